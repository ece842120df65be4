"""The end of a run: the kept checkpoint finalised on validation, and the results.

Test-time augmentation, temperature and decision threshold are chosen on the validation set
and written into ``checkpoint.pt``; ``metrics.json`` and ``val_predictions.csv`` hold the
validation numbers they give; ``last.pt`` is removed (the run is complete). The exports
(``model.onnx``, ``MODEL_CARD.md``) are written above the engine, by ``metastasis.training``:
the engine never imports ``metastasis.export``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from metastasis.checkpoint import FILENAME, load_checkpoint, save_checkpoint
from metastasis.config import TrainConfig
from metastasis.data.dataset import PatchDataset, passthrough
from metastasis.engine.data import TrainingData
from metastasis.engine.environment import eval_batch_size
from metastasis.engine.run_folder import write_results
from metastasis.engine.state import FILENAME as STATE_FILE
from metastasis.errors import MetastasisError
from metastasis.inference.batches import EpochOutput, predict
from metastasis.metrics.calibration import fit_temperature, logits_from_probs
from metastasis.metrics.thresholds import cross_fitted_operating_point, select_threshold
from metastasis.models import effective_tta

log = logging.getLogger("metastasis.engine.trainer")  # the lines are the trainer's


def finalise_run(
    run_dir: Path,
    cfg: TrainConfig,
    best: EpochOutput,
    best_epoch: int,
    history: list[dict[str, Any]],
    data: TrainingData,
    fabric: Any,
    progress: bool,
    swa: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], EpochOutput]:
    """Finalise the checkpoint and write the results (``swa``: what ``metrics.json`` says of a
    weight average); (metrics.json's content, the final validation output)."""
    final, calibration = finalise_checkpoint(
        run_dir, cfg, best, data.val_dataset(), fabric, progress
    )
    metrics = write_results(
        run_dir, cfg, data.val, data.val_idx, final, best_epoch, history, calibration, swa
    )
    (run_dir / STATE_FILE).unlink(missing_ok=True)  # complete: nothing left to resume
    return metrics, final


def finalise_checkpoint(
    run_dir: Path,
    cfg: TrainConfig,
    best: EpochOutput,
    val: PatchDataset,
    fabric: Any,
    progress: bool,
) -> tuple[EpochOutput, dict[str, Any]]:
    """Test-time augmentation, temperature and threshold for the best checkpoint, all chosen on
    validation and written into it; the validation output they give."""
    bundle = load_checkpoint(run_dir / FILENAME)
    out = best
    tta = effective_tta(bundle.arch, cfg.tta)  # a D4-invariant model needs no 8 views
    if tta != "none":
        model = bundle.build_model().to(fabric.device).to(memory_format=torch.channels_last)
        loader = DataLoader(
            val,
            batch_size=eval_batch_size(fabric.device, cfg.eval_batch_size),
            collate_fn=passthrough,
        )
        bar = tqdm(loader, desc=f"validating (tta {tta})", disable=not progress, leave=False)
        # In float32, as `predict` and `evaluate` run it: the threshold and temperature are
        # fitted on exactly the numbers they will be applied to.
        out = predict(model, bar, bundle.preprocessing, fabric.device, tta=tta)
    temperature = 1.0
    if cfg.calibrate:
        # Logits as predict() returns them (after a resume only probabilities were kept), and
        # probabilities computed exactly as predict() will (float32 logits / T, sigmoid).
        logits = out.logits if out.logits is not None else logits_from_probs(out.probs)
        logits = np.asarray(logits, dtype=np.float32)
        temperature = fit_temperature(logits, out.labels)
        probs = torch.sigmoid(torch.from_numpy(logits) / temperature).numpy()
        out = EpochOutput(out.loss, probs, out.labels, out.seconds, logits)
    threshold, method = cfg.threshold, "fixed"
    transfer: dict[str, Any] = {}
    if cfg.threshold_method != "fixed":
        threshold, method = select_threshold(out.labels, out.probs, cfg.threshold_method)
        transfer = _transfer(out.labels, out.probs, method)
    bundle.threshold, bundle.temperature, bundle.tta = threshold, temperature, tta
    bundle.metrics = {**bundle.metrics, "threshold_method": method, **transfer}
    save_checkpoint(run_dir / FILENAME, bundle)
    log.info(
        "checkpoint: threshold %.4f (%s), temperature %.3f, tta %s",
        threshold,
        method,
        temperature,
        tta if tta == cfg.tta else f"{tta} (asked: {cfg.tta}; the model is D4-invariant)",
    )
    return out, {
        "threshold": threshold,
        "threshold_method": method,
        "temperature": temperature,
        "tta": tta,
        **transfer,
    }


def _transfer(labels: Any, probs: Any, method: str) -> dict[str, Any]:
    """The cross-fitted sensitivity and specificity of a data-chosen threshold (how it holds on
    patches it was not chosen on), or nothing when the validation set is too small to split."""
    try:
        return {"threshold_transfer": cross_fitted_operating_point(labels, probs, method)}
    except MetastasisError as err:
        log.info("threshold transfer not estimated: %s", err)
        return {}
