"""`metastasis train`: data -> cache -> split -> fit -> best checkpoint -> run folder.

``fit`` is the epoch loop; each part it calls has one job: ``data.py`` (splits, loaders,
sampler, loss), ``learner.py`` (model, optimiser, schedule, EMA; one epoch of training and a
validation pass), ``swa.py`` (stochastic weight averaging: the average of the last epochs,
which replaces the best epoch at the end), ``best.py`` (which epoch's checkpoint is kept),
``state.py`` (what a resumed
run needs: ``TrainState.capture`` / ``restore``), ``history.py`` (the log line, ``history.csv``
and the ``on_epoch_end`` hooks), ``finalise.py`` (calibration, threshold, results).
Devices and precision come from Lightning Fabric. The exports (``model.onnx``, ``MODEL_CARD.md``),
figures and ``report.html`` are not written here: ``metastasis.fit`` and ``metastasis.train``
add them (``training.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import pandas as pd
import torch
from tqdm.auto import tqdm

from metastasis.checkpoint import FILENAME
from metastasis.config import TrainConfig
from metastasis.engine.best import BestEpoch, save_best_checkpoint, score
from metastasis.engine.data import (
    Loaders,
    TrainingData,
    batch_norm_loader,
    make_loaders,
    make_loss,
    open_training_data,
)
from metastasis.engine.finalise import finalise_run
from metastasis.engine.history import EpochLog, history_row, nan_if_none
from metastasis.engine.learner import Learner
from metastasis.engine.progress import ThroughputLog
from metastasis.engine.run_folder import write_environment, write_run_inputs
from metastasis.engine.state import FILENAME as STATE_FILE
from metastasis.engine.state import TrainState, load_train_state, save_train_state
from metastasis.errors import DataError, MetastasisError
from metastasis.inference.batches import EpochOutput
from metastasis.io import atomic_write_text, output_dir
from metastasis.memory import configure_malloc
from metastasis.metrics.classification import binary_metrics
from metastasis.models import list_models
from metastasis.transforms.augment import Augmenter, augment_spec
from metastasis.transforms.stain import sample_reference

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What ``fit`` returns; the run folder holds the same and more."""

    run_dir: Path
    metrics: dict[str, Any]  # metrics.json
    best_epoch: int
    history: pd.DataFrame  # history.csv
    is_global_zero: bool = True  # False in the other processes of a DDP run
    val: EpochOutput | None = None  # the final validation output: metrics.json's numbers
    data: TrainingData | None = None  # the splits and rows the run used

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / FILENAME


def default_run_dir(model: str) -> Path:
    return Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{model}"


def fit(
    cfg: TrainConfig,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    resume: bool = False,
) -> RunResult:
    """Train ``cfg.model`` on ``cfg.data`` and write the run folder's data files.

    ``on_epoch_end(epoch, history_row)`` is called after each epoch's validation (e.g. to report
    to a hyper-parameter search, which may raise to stop the run early). With ``resume``, the
    run in ``cfg.out`` continues from its last completed epoch (see ``state.py``) and ends with
    the same numbers as an uninterrupted run. ``metastasis.train`` is this plus the figures and
    ``report.html``.
    """
    if cfg.data is None:
        raise MetastasisError("no training data: pass --data DIR or set `data:` in the config")
    # Every other option was refused by `TrainConfig` (metastasis.config) when it was built.
    _check_model(cfg.model)
    augmenter = Augmenter(augment_spec(cfg.augment, cfg.augment_kwargs))
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg.model)
    # Several processes (DDP): Fabric first, so that only rank 0 claims the folder, builds the
    # cache and writes files. One process: Lightning is imported after the data is open, so a
    # data problem is reported at once.
    fabric = _make_fabric(cfg) if _distributed(cfg) else None
    rank_zero = fabric is None or fabric.is_global_zero
    state = _resumable_state(run_dir) if resume else None
    if not resume and rank_zero:
        _claim_run_dir(run_dir)
    cfg = cfg.replace(out=str(run_dir))
    with fabric.rank_zero_first() if fabric is not None else contextlib.nullcontext():
        data = open_training_data(cfg, progress)
    fabric = fabric or _make_fabric(cfg)
    learner, loaders, loss_fn, malloc = _setup(cfg, fabric, augmenter, data)
    history: list[dict[str, Any]] = []
    best = BestEpoch()
    if state is not None:
        _resume(state, run_dir, learner, loaders, history, best, data.fingerprints)
    elif rank_zero:
        write_run_inputs(run_dir, cfg, data)
    if rank_zero:
        env = {"malloc": malloc, "world_size": fabric.world_size}
        write_environment(run_dir, fabric.device, loaders.workers, loaders.eval_batch, **env)
    epoch_log = EpochLog(run_dir, cfg.epochs, history, write=rank_zero, hooks=[on_epoch_end])
    throughput = ThroughputLog(  # without a progress bar, a log line per tenth of each epoch
        len(loaders.train),
        cfg.batch_size,
        patches=math.ceil(len(data.train_idx) / fabric.world_size),  # DDP: this process's shard
        enabled=not progress and rank_zero,
    )
    try:
        for epoch in range(len(history) + 1, cfg.epochs + 1):
            start = time.perf_counter()
            desc = f"epoch {epoch}/{cfg.epochs}"
            throughput.start(desc)
            bar = tqdm(loaders.train, desc=desc, unit="batch", disable=not progress, leave=False)
            tr = learner.train_epoch(bar, loss_fn, on_step=throughput.step, epoch=epoch)
            va = learner.validate(loaders.val)
            seconds = time.perf_counter() - start
            row = history_row(epoch, tr, va, cfg.threshold, seconds, learner.last_lr)
            history.append(row)
            improved = best.update(epoch, row, va)
            if rank_zero:
                _save_epoch(run_dir, cfg, learner, loaders, data, history, best, improved)
            epoch_log.epoch_end(epoch, row, improved)  # log line, history.csv, on_epoch_end
            if best.should_stop(epoch, cfg.early_stopping):  # logs why
                break
    except KeyboardInterrupt:
        if rank_zero:
            _note_interrupt(run_dir, len(history) + 1, best.epoch)
        raise
    swa = _finish_swa(run_dir, cfg, learner, loaders, data, history, best, progress)
    return _finish(run_dir, cfg, best, history, data, fabric, progress, swa)


def _save_epoch(
    run_dir: Path,
    cfg: TrainConfig,
    learner: Learner,
    loaders: Loaders,
    data: TrainingData,
    history: list[dict[str, Any]],
    best: BestEpoch,
    improved: bool,
) -> None:
    """Rank 0, after each epoch: the checkpoint when the epoch is the best so far, and the
    training state a resumed run starts from."""
    epoch, row = int(history[-1]["epoch"]), history[-1]
    if improved:
        weights, arch = learner.weights(), (learner.choice.arch, learner.choice.kwargs)
        pre = learner.preprocessing
        save_best_checkpoint(run_dir / FILENAME, cfg, pre, weights, epoch, row, arch=arch)
    live = _live(learner, loaders)
    state = TrainState.capture(
        epoch, **live, history=history, best=best, fingerprints=data.fingerprints
    )
    save_train_state(run_dir, state)


def _finish_swa(
    run_dir: Path,
    cfg: TrainConfig,
    learner: Learner,
    loaders: Loaders,
    data: TrainingData,
    history: list[dict[str, Any]],
    best: BestEpoch,
    progress: bool,
) -> dict[str, Any] | None:
    """With SWA: the average's batch norm recomputed, the average validated and saved as the
    run's checkpoint in place of the best epoch (``best`` now describes it); what
    ``metrics.json`` says of it. None without SWA."""
    swa = learner.swa
    if swa is None or not history:
        return None
    loader = batch_norm_loader(cfg, data, learner.fabric, loaders.workers)
    bar = tqdm(loader, desc="batch norm (swa)", unit="batch", disable=not progress, leave=False)
    va, bn_seconds = learner.average(bar, loaders.val)
    last = history[-1]
    auc = nan_if_none(binary_metrics(va.labels, va.probs, cfg.threshold)["roc_auc"])
    row = {"val_roc_auc": auc, "val_loss": va.loss}
    first, epoch = swa.first_epoch, int(last["epoch"])
    record = {
        "epochs": [first, epoch],
        "n_averaged": swa.n_averaged,
        "lr": float(learner.raw_optimizer.param_groups[0]["lr"]),
        "val_roc_auc": row["val_roc_auc"],
        "val_loss": va.loss,
        "last_epoch_val_roc_auc": last["val_roc_auc"],
        "best_epoch": best.epoch,
        "best_epoch_val_roc_auc": history[best.epoch - 1]["val_roc_auc"],
        "batch_norm_seconds": round(bn_seconds, 3),
        "batch_norm_patches": len(data.train_idx),
        "validation_seconds": round(va.seconds, 3),
    }
    if learner.fabric.is_global_zero:
        weights = swa.weights()
        path, pre = run_dir / FILENAME, learner.preprocessing
        arch = (learner.choice.arch, learner.choice.kwargs)
        save_best_checkpoint(path, cfg, pre, weights, epoch, row, arch, swa_epochs=[first, epoch])
    best.score, best.epoch, best.val = score(row), epoch, va
    log.info(
        "SWA of epochs %d-%d: val auc %.4f (last epoch %.4f, best epoch %d %.4f); batch norm "
        "recomputed in %.1f s",
        first,
        epoch,
        row["val_roc_auc"],
        last["val_roc_auc"],
        record["best_epoch"],
        record["best_epoch_val_roc_auc"],
        bn_seconds,
    )
    return record


def _setup(
    cfg: TrainConfig, fabric: Any, augmenter: Augmenter, data: TrainingData
) -> tuple[Learner, Loaders, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], str]:
    """Seeded, in this order: the model, the loaders, the loss, the schedule; and the malloc."""
    from lightning.fabric.utilities.seed import seed_everything

    malloc = configure_malloc()
    seed_everything(cfg.seed, verbose=False)
    learner = Learner(cfg, fabric, augmenter)
    # stain normalisation: its reference, fitted on training patches, joins the preprocessing
    stain = sample_reference(cfg.stain_normalisation, data.train.images, data.train_idx, cfg.seed)
    learner.preprocessing = replace(learner.preprocessing, stain=stain)
    loaders = make_loaders(cfg, data, fabric)
    loss_fn = make_loss(cfg, data.train_labels)
    learner.schedule(cfg, len(loaders.train))
    log.info(
        "training %s on %d patches, validating on %d (%s); device %s, %d threads",
        learner.choice.arch,
        len(data.train_idx),
        len(data.val_idx),
        data.protocol,
        fabric.device,
        torch.get_num_threads(),
    )
    return learner, loaders, loss_fn, malloc


def _live(learner: Learner, loaders: Loaders) -> dict[str, Any]:
    """The live objects a training state is captured from and restored into."""
    return {
        "model": learner.model,
        "optimizer": learner.optimizer,
        "scheduler": learner.scheduler,
        "ema": learner.ema,
        "swa": learner.swa,
        "rngs": {**learner.rngs(), "loader": loaders.generator},
    }


def _resume(
    state: TrainState,
    run_dir: Path,
    learner: Learner,
    loaders: Loaders,
    history: list[dict[str, Any]],
    best: BestEpoch,
    fingerprints: dict[str, str],
) -> None:
    learner.enter_epoch(state.epoch)  # SWALR's state needs SWALR
    try:
        state.restore(
            **_live(learner, loaders), history=history, best=best, fingerprints=fingerprints
        )
    except DataError as exc:
        raise DataError(f"{run_dir}: {exc}") from None
    if hasattr(loaders.train, "_num_iter_calls"):  # DDP: Fabric sets the sampler's epoch
        loaders.train._num_iter_calls = state.epoch
    log.info("resuming %s after epoch %d", run_dir, state.epoch)


def _finish(
    run_dir: Path,
    cfg: TrainConfig,
    best: BestEpoch,
    history: list[dict[str, Any]],
    data: TrainingData,
    fabric: Any,
    progress: bool,
    swa: dict[str, Any] | None = None,
) -> RunResult:
    """Rank 0 finalises the checkpoint and writes the results; the others read them."""
    if best.val is None:
        raise MetastasisError(f"{run_dir}: no epoch gave a validation score")
    rank_zero = bool(fabric.is_global_zero)
    metrics: dict[str, Any] = {}
    final = None
    if rank_zero:
        metrics, final = finalise_run(
            run_dir, cfg, best.val, best.epoch, history, data, fabric, progress, swa
        )
    fabric.barrier()
    if not rank_zero:  # DDP: the other processes return what rank 0 wrote
        metrics = json.loads((run_dir / "metrics.json").read_text())
    history_frame = pd.DataFrame(history)
    return RunResult(run_dir, metrics, best.epoch, history_frame, rank_zero, final, data)


def _distributed(cfg: TrainConfig) -> bool:
    """Several processes: asked for, or started by torchrun / SLURM (WORLD_SIZE is set)."""
    return cfg.devices != 1 or cfg.num_nodes != 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1


def _make_fabric(cfg: TrainConfig) -> Any:
    from lightning.fabric import Fabric

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    fabric = Fabric(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=cast(Any, cfg.precision),
    )
    fabric.launch()  # under torchrun / SLURM: joins the process group; else starts the others
    return fabric


def _check_model(name: str) -> None:
    """The one option the config cannot refuse: the models register when their package is
    imported, which ``TrainConfig`` does not do. Checked before any data is read."""
    if name not in list_models():
        raise MetastasisError(
            f"unknown model {name!r}; known: {', '.join(list_models())} (metastasis models)"
        )


def _resumable_state(run_dir: Path) -> TrainState | None:
    if not (run_dir / "config.yaml").is_file():
        raise MetastasisError(f"{run_dir}: not a run folder (no config.yaml); nothing to resume")
    if (run_dir / "metrics.json").is_file() and not (run_dir / STATE_FILE).is_file():
        raise MetastasisError(f"{run_dir}: this run is already complete")
    return load_train_state(run_dir)


def _note_interrupt(run_dir: Path, epoch: int, best_epoch: int) -> None:
    best = f"epoch {best_epoch} in {FILENAME}" if best_epoch else "none yet"
    atomic_write_text(
        run_dir / "INTERRUPTED.txt",
        f"Interrupted during epoch {epoch} at {datetime.now():%Y-%m-%d %H:%M:%S}.\n"
        f"Best checkpoint so far: {best}.\n"
        f"Continue with: metastasis train --resume {run_dir}\n",
    )
    log.warning("interrupted; continue with: metastasis train --resume %s", run_dir)


def _claim_run_dir(run_dir: Path) -> None:
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise MetastasisError(
            f"{run_dir}: run folder already exists and is not empty; choose another --out"
        )
    output_dir(run_dir, "run folder")
