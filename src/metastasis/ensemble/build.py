"""`metastasis ensemble`: trained runs -> one run folder whose checkpoint averages them.

``build_ensemble`` loads the members' checkpoints (refusing members that do not take the same
input), builds the ``ensemble`` checkpoint (``ensemble.bundle``), and with validation data
chooses its decision threshold there with the trainer's threshold methods
(``metrics.thresholds.select_threshold``) and measures it and each member there (ROC-AUC and
the rest, ``metrics.evaluation``); without, its threshold is the mean of the members'. The cost
per patch of the ensemble and of each member (``ensemble.cost``) goes with the metrics. The run
folder holds what a training run's holds and every command reads: ``checkpoint.pt``,
``config.yaml``, ``metrics.json``, ``val_predictions.csv`` (with validation data), ``model.onnx``
(all members in one graph, checked against PyTorch) and ``MODEL_CARD.md``; each file is written
atomically, the checkpoint first and the exports last.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from metastasis.checkpoint import FILENAME, Bundle, checkpoint_path, save_checkpoint
from metastasis.data.cache import CachedSplit, open_labelled
from metastasis.ensemble.bundle import Member, ensemble_bundle, load_members
from metastasis.ensemble.cost import seconds_per_patch
from metastasis.ensemble.options import EnsembleOptions
from metastasis.errors import OutputError
from metastasis.inference.predictor import Predictor, auto_device
from metastasis.io import atomic_write_json, atomic_write_text, check_outputs, output_dir
from metastasis.metrics.evaluation import evaluation_metrics
from metastasis.metrics.thresholds import select_threshold
from metastasis.predictions import predictions_frame, write_table

log = logging.getLogger(__name__)

VAL_SPLITS = ("valid", "val", "test")  # the split chosen when --val-data has several
RUN_FILES = ("config.yaml", "metrics.json", "val_predictions.csv", "model.onnx", "MODEL_CARD.md")
MEMBER_KEYS = ("roc_auc", "pr_auc", "accuracy", "sensitivity", "specificity", "brier", "ece")


@dataclass(frozen=True)
class EnsembleResult:
    run_dir: Path
    bundle: Bundle
    metrics: dict[str, Any]  # what metrics.json holds


@dataclass(frozen=True)
class Runner:
    """How the models run on validation data (``InferenceOptions``' engine, batch, device)."""

    engine: str = "auto"
    batch_size: int = 256
    device: str = "auto"

    def probabilities(self, bundle: Bundle, tta: str, data: CachedSplit, rows: np.ndarray,
                      progress: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        predictor = Predictor(
            bundle.build_model(), bundle.preprocessing, bundle.threshold, self.device,
            self.batch_size, tta=tta, temperature=bundle.temperature, engine=self.engine,
        )  # fmt: skip
        return predictor.predict_split(data, rows, progress)


def build_ensemble(
    runs: Sequence[str | Path],
    out: str | Path,
    val_data: str | Path | None = None,
    *,
    options: EnsembleOptions | None = None,
    split: str | None = None,
    engine: str = "auto",
    batch_size: int = 256,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> EnsembleResult:
    """Write the ensemble of ``runs`` (run folders or checkpoints) into the run folder ``out``;
    ``val_data`` (``split``: default valid, val, test or the only one) chooses its threshold
    (``options.threshold_method``) and measures it and its members. See the module notes."""
    options = options or EnsembleOptions()
    out_dir = Path(out)
    _check_out(out_dir, runs)
    members = load_members(runs)
    tta = options.tta
    bundle = ensemble_bundle(members, tta=tta)
    runner = Runner(engine, batch_size, device)
    if val_data is not None:
        cached, rows = open_labelled(
            val_data, split, VAL_SPLITS, cache_dir, progress, "--val-data needs labelled patches"
        )
        metrics, table = _validate(bundle, members, cached, rows, options, runner, progress)
    else:
        metrics, table = _unvalidated(bundle, members), None
    metrics["cost"] = _cost(bundle, members, options.cost_patches, device)
    bundle.metrics = {k: metrics[k] for k in ("members", "cost")} | {
        "threshold_method": metrics["checkpoint"]["threshold_method"],
        "val_roc_auc": (metrics.get("val") or {}).get("roc_auc"),
    }
    bundle.config = _config(runs, val_data, split, bundle, options)
    _write(out_dir, bundle, metrics, table, val_data, split, cache_dir, progress)
    return EnsembleResult(out_dir, bundle, metrics)


def _check_out(out_dir: Path, runs: Sequence[str | Path]) -> None:
    if (out_dir / FILENAME).exists():
        raise OutputError(f"{out_dir}: already holds a checkpoint; give a new --out folder")
    check_outputs(
        files=[out_dir / FILENAME, *(out_dir / name for name in RUN_FILES)],
        folders=[out_dir],
        inputs=[checkpoint_path(r) for r in runs],
    )


def _validate(
    bundle: Bundle,
    members: Sequence[Member],
    cached: CachedSplit,
    rows: np.ndarray,
    options: EnsembleOptions,
    runner: Runner,
    progress: bool,
) -> tuple[dict[str, Any], Any]:
    """The threshold chosen on validation (set in ``bundle``), the metrics of the ensemble and
    of each member there, and the ensemble's validation predictions."""
    probs, labels = runner.probabilities(bundle, bundle.tta, cached, rows, progress)
    if options.threshold_method == "fixed":
        threshold, method = bundle.threshold, "fixed"
    else:
        threshold, method = select_threshold(labels, probs, options.threshold_method)
    bundle.threshold = float(threshold)
    described = []
    for name, b in members:
        p, _ = runner.probabilities(b, b.tta, cached, rows, progress)
        val = evaluation_metrics(labels, p, b.threshold, n_resamples=0)
        described.append(_member(name, b) | {"val": {k: val[k] for k in MEMBER_KEYS}})
    log.info("ensemble: threshold %.4f (%s) on %s", threshold, method, cached.name)
    metrics = {
        "val": evaluation_metrics(labels, probs, bundle.threshold),
        "val_data": cached.name,
        "checkpoint": _checkpoint(bundle, method),
        "members": described,
    }
    return metrics, predictions_frame(cached.ids[rows], probs, bundle.threshold, labels)


def _unvalidated(bundle: Bundle, members: Sequence[Member]) -> dict[str, Any]:
    note = "the mean of the members' thresholds (no validation data)"
    return {
        "checkpoint": _checkpoint(bundle, "fixed") | {"threshold_note": note},
        "members": [_member(name, b) for name, b in members],
    }


def _member(name: str, b: Bundle) -> dict[str, Any]:
    return {"run": name, "arch": b.arch, "threshold": b.threshold, "temperature": b.temperature,
            "tta": b.tta}  # fmt: skip


def _checkpoint(bundle: Bundle, method: str) -> dict[str, Any]:
    return {"threshold": bundle.threshold, "threshold_method": method, "temperature": 1.0,
            "tta": bundle.tta}  # fmt: skip


def _cost(bundle: Bundle, members: Sequence[Member], n: int, device: str) -> dict[str, Any]:
    """Seconds per patch of the ensemble and of each member (``ensemble.cost``)."""
    where = auto_device(device)
    models = [bundle.build_model(), *(b.build_model() for _, b in members)]
    seconds = seconds_per_patch(models, bundle.preprocessing, where, n)
    total = sum(seconds[1:])
    log.info(
        "cost per patch: ensemble %.2e s, members %s s",
        seconds[0],
        ", ".join(f"{s:.2e}" for s in seconds[1:]),
    )
    return {
        "seconds_per_patch": seconds[0],
        "members_seconds_per_patch": seconds[1:],
        "ratio_to_members_sum": seconds[0] / total if total > 0 else None,
        "how": f"torch float32 on {where}, {torch.get_num_threads()} threads, {n} synthetic "
        "patches in one batch, fastest of 3 passes",
    }


def _config(
    runs: Sequence[str | Path],
    val_data: str | Path | None,
    split: str | None,
    bundle: Bundle,
    options: EnsembleOptions,
) -> dict[str, Any]:
    """What made this ensemble (``config.yaml``; also in the checkpoint)."""
    return {
        "command": "ensemble",
        "members": [str(r) for r in runs],
        "val_data": None if val_data is None else str(val_data),
        "split": split,
        "threshold_method": options.threshold_method,
        "tta": bundle.tta,
        "cost_patches": options.cost_patches,
    }


def _write(
    out_dir: Path,
    bundle: Bundle,
    metrics: dict[str, Any],
    table: Any,
    val_data: str | Path | None,
    split: str | None,
    cache_dir: str | Path | None,
    progress: bool,
) -> None:
    """The run folder: checkpoint, config, metrics, predictions, then the ONNX graph (checked on
    validation patches, else synthetic ones) and the model card."""
    from metastasis.export.bundle import probe_patches, write_run_exports

    output_dir(out_dir, "ensemble run folder")
    save_checkpoint(out_dir / FILENAME, bundle)
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(bundle.config, sort_keys=False))
    atomic_write_json(out_dir / "metrics.json", metrics)
    if table is not None:
        write_table(table, out_dir / "val_predictions.csv")
    probe, _ = probe_patches(val_data, split, cache_dir=cache_dir, progress=progress)
    write_run_exports(out_dir, probe)
