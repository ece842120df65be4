"""`metastasis train`: data -> cache -> split -> fit -> best checkpoint -> run folder.

Devices and precision come from Lightning Fabric; the loop itself is in `loop.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm.auto import tqdm

from metastasis.config import TrainConfig
from metastasis.data.cache import CachedSplit, open_split
from metastasis.data.dataset import PatchDataset, passthrough
from metastasis.data.splits import stratified_split
from metastasis.engine.checkpoint import (
    FILENAME,
    Bundle,
    load_checkpoint,
    save_checkpoint,
    state_dict_cpu,
)
from metastasis.engine.ema import EMA
from metastasis.engine.environment import environment, eval_batch_size, loader_workers
from metastasis.engine.loop import TTA_MODES, EpochOutput, bce_loss, predict, train_one_epoch
from metastasis.engine.memory import configure_malloc
from metastasis.engine.progress import ThroughputLog
from metastasis.engine.run_folder import (
    history_row,
    write_augmentation_preview,
    write_history,
    write_results,
    write_run_inputs,
)
from metastasis.engine.schedule import build_scheduler, check_schedule
from metastasis.engine.state import FILENAME as STATE_FILE
from metastasis.engine.state import TrainState, load_train_state, save_train_state
from metastasis.errors import DataError, MetastasisError
from metastasis.export.bundle import N_PROBE, write_run_exports
from metastasis.io import atomic_write_json, atomic_write_text, output_dir
from metastasis.metrics.calibration import fit_temperature, logits_from_probs
from metastasis.metrics.thresholds import select_threshold
from metastasis.models import create_model, default_preprocessing, list_models
from metastasis.transforms.augment import Augmenter, augment_spec

log = logging.getLogger(__name__)

TRAIN_SPLITS = ("train",)
OPTIMIZERS = ("adam", "adamw", "sgd")
VAL_SPLITS = ("valid", "val", "validation")


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    best_epoch: int
    history: pd.DataFrame
    is_global_zero: bool = True  # False in the other processes of a DDP run

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
    """Train ``cfg.model`` on ``cfg.data`` and write a complete run folder.

    ``on_epoch_end(epoch, history_row)`` is called after each epoch's validation (e.g. to report
    to a hyper-parameter search, which may raise to stop the run early). With ``resume``, the
    run in ``cfg.out`` continues from its last completed epoch (see ``state.py``) and ends with
    the same numbers as an uninterrupted run.
    """
    if cfg.data is None:
        raise MetastasisError("no training data: pass --data DIR or set `data:` in the config")
    augmenter = _check_options(cfg)
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg.model)
    # Several processes (DDP): Fabric first, so that only rank 0 claims the folder, builds the
    # cache and writes files. One process: Lightning is imported after the data is open, so a
    # data problem is reported at once.
    fabric = _make_fabric(cfg) if _distributed(cfg) else None
    rank_zero = fabric is None or fabric.is_global_zero
    state: TrainState | None = None
    if resume:
        state = _resumable_state(run_dir)
    elif rank_zero:
        _claim_run_dir(run_dir)
    cfg = cfg.replace(out=str(run_dir))
    with fabric.rank_zero_first() if fabric is not None else contextlib.nullcontext():
        train_data, val_data, train_idx, val_idx, protocol = _open_data(cfg, progress)
    if fabric is None:
        fabric = _make_fabric(cfg)

    from lightning.fabric.utilities.seed import seed_everything

    malloc = configure_malloc()
    seed_everything(cfg.seed, verbose=False)
    model = create_model(cfg.model, **cfg.model_kwargs)
    preprocessing = default_preprocessing(cfg.model)
    # recorded in the checkpoint with the rest of the preprocessing
    preprocessing = dataclasses.replace(
        preprocessing, input_size=cfg.input_size or preprocessing.input_size, mpp=cfg.mpp
    )
    model = model.to(memory_format=torch.channels_last)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay else None
    raw_optimizer = _optimizer(cfg, model)
    model, optimizer = fabric.setup(model, raw_optimizer)
    if ema is not None:
        ema.module.to(fabric.device)
    pin = fabric.device.type == "cuda"
    workers = loader_workers(fabric.device, cfg.num_workers)
    eval_batch = eval_batch_size(fabric.device, cfg.eval_batch_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_labels = train_data.labels[train_idx]
    n_pos = int((train_labels == 1).sum())
    n_neg = len(train_labels) - n_pos
    sampler = None
    if cfg.class_balance == "sampler":
        # Each class drawn equally often (with replacement); an epoch keeps its usual length.
        weights = np.where(train_labels == 1, 1.0 / max(n_pos, 1), 1.0 / max(n_neg, 1))
        sampler = WeightedRandomSampler(weights.tolist(), len(weights), generator=gen)
    pos_weight = n_neg / max(n_pos, 1) if cfg.class_balance == "loss" else None
    loss_fn = bce_loss(cfg.label_smoothing, pos_weight)
    train_loader = DataLoader(
        PatchDataset(train_data, train_idx),
        batch_size=cfg.batch_size,
        shuffle=cfg.shuffle and sampler is None,
        sampler=sampler,
        generator=gen,
        collate_fn=passthrough,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
    )
    val_loader = DataLoader(
        PatchDataset(val_data, val_idx),
        batch_size=eval_batch,
        shuffle=False,
        collate_fn=passthrough,
        num_workers=workers,
        pin_memory=pin,
    )
    train_loader = fabric.setup_dataloaders(train_loader)  # DDP: a shard per process
    val_loader = fabric.setup_dataloaders(val_loader, use_distributed_sampler=False)  # all of it
    scheduler = build_scheduler(
        cfg.schedule, raw_optimizer, cfg.epochs, len(train_loader), cfg.warmup_epochs
    )

    # without a progress bar, a log line per tenth of each epoch (rank 0)
    throughput = ThroughputLog(
        len(train_loader),
        cfg.batch_size,
        patches=math.ceil(len(train_idx) / fabric.world_size),  # DDP: this process's shard
        enabled=not progress and rank_zero,
    )

    def after_step() -> None:
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update(model)
        throughput.step()

    fingerprints = {"train": train_data.fingerprint, "val": val_data.fingerprint}
    if state is not None and state.fingerprints != fingerprints:
        raise DataError(f"{run_dir}: the data changed since this run started; cannot resume")
    if state is None and rank_zero:
        write_run_inputs(run_dir, cfg, train_data, val_data, train_idx, val_idx, protocol)
        write_augmentation_preview(run_dir, train_data, train_idx, augmenter, cfg.seed)
    if rank_zero:
        atomic_write_json(
            run_dir / "environment.json",
            {
                **environment(fabric.device, workers, eval_batch),
                "malloc": malloc,
                "world_size": fabric.world_size,
            },
        )
    log.info(
        "training %s on %d patches, validating on %d (%s); device %s, %d threads",
        cfg.model,
        len(train_idx),
        len(val_idx),
        protocol,
        fabric.device,
        torch.get_num_threads(),
    )

    aug_gen = torch.Generator().manual_seed(cfg.seed + 1 + 1000 * fabric.global_rank)

    def prepare_train(x: torch.Tensor) -> torch.Tensor:
        return preprocessing(augmenter(x, aug_gen))

    def validate() -> EpochOutput:
        if ema is None:
            return predict(model, val_loader, preprocessing)
        ema.sync_buffers(model)
        with fabric.autocast():
            return predict(ema.module, val_loader, preprocessing)

    history: list[dict[str, Any]] = []
    best_score, best_epoch, best_val = -math.inf, 0, None
    if state is not None:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        torch.set_rng_state(state.rng["torch"])
        gen.set_state(state.rng["loader"])
        aug_gen.set_state(state.rng["augment"])
        if scheduler is not None and state.scheduler is not None:
            scheduler.load_state_dict(state.scheduler)
        if ema is not None and state.ema is not None:
            ema.load_state_dict(state.ema)
        history, best_score, best_epoch = state.history, state.best_score, state.best_epoch
        best_val = EpochOutput(math.nan, state.best_probs.numpy(), state.best_labels.numpy(), 0.0)
        if hasattr(train_loader, "_num_iter_calls"):  # DDP: Fabric sets the sampler's epoch
            train_loader._num_iter_calls = state.epoch
        log.info("resuming %s after epoch %d", run_dir, state.epoch)
    try:
        for epoch in range(len(history) + 1, cfg.epochs + 1):
            start = time.perf_counter()
            throughput.start(f"epoch {epoch}/{cfg.epochs}")
            bar = tqdm(
                train_loader,
                desc=f"epoch {epoch}/{cfg.epochs}",
                unit="batch",
                disable=not progress,
                leave=False,
            )
            tr = train_one_epoch(
                model,
                bar,
                optimizer,
                prepare_train,
                backward=fabric.backward,
                loss_fn=loss_fn,
                after_step=after_step,
            )
            if fabric.world_size > 1:
                tr = _gather(fabric, tr)
            va = validate()
            row = history_row(epoch, tr, va, cfg.threshold, time.perf_counter() - start)
            row["lr"] = raw_optimizer.param_groups[0]["lr"]  # after the epoch's last step
            history.append(row)
            score = row["val_roc_auc"] if not math.isnan(row["val_roc_auc"]) else -row["val_loss"]
            improved = score > best_score
            if improved:
                best_score, best_epoch, best_val = score, epoch, va
            if improved and rank_zero:
                bundle = Bundle(
                    arch=cfg.model,
                    arch_kwargs=dict(cfg.model_kwargs),
                    state_dict=ema.state_dict() if ema is not None else state_dict_cpu(model),
                    preprocessing=preprocessing,
                    threshold=cfg.threshold,
                    config=cfg.to_dict(),
                    metrics={"epoch": epoch, "val_roc_auc": row["val_roc_auc"]},
                )
                save_checkpoint(run_dir / FILENAME, bundle)
            log.info(
                "epoch %d/%d  loss %.4f  acc %.4f | val loss %.4f  acc %.4f  auc %.4f | "
                "%.0f patches/s%s",
                epoch,
                cfg.epochs,
                row["train_loss"],
                row["train_accuracy"],
                row["val_loss"],
                row["val_accuracy"],
                row["val_roc_auc"],
                row["train_patches_per_s"],
                "  *best" if improved else "",
            )
            assert best_val is not None
            if not rank_zero:
                pass
            elif state := TrainState(
                epoch=epoch,
                model=state_dict_cpu(model),
                optimizer=optimizer.state_dict(),
                rng={
                    "torch": torch.get_rng_state(),
                    "loader": gen.get_state(),
                    "augment": aug_gen.get_state(),
                },
                history=history,
                best_score=best_score,
                best_epoch=best_epoch,
                best_probs=torch.from_numpy(best_val.probs),
                best_labels=torch.from_numpy(best_val.labels),
                fingerprints=fingerprints,
                scheduler=scheduler.state_dict() if scheduler is not None else None,
                ema=ema.state_dict() if ema is not None else None,
            ):
                save_train_state(run_dir, state)
                # Last: a history row means its epoch's checkpoint and state are on disk.
                write_history(run_dir, history)
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
            if cfg.early_stopping and epoch - best_epoch >= cfg.early_stopping:
                log.info(
                    "early stop after epoch %d: no better val AUC for %d epochs (best: epoch %d)",
                    epoch,
                    cfg.early_stopping,
                    best_epoch,
                )
                break
    except KeyboardInterrupt:
        if rank_zero:
            _note_interrupt(run_dir, len(history) + 1, best_epoch)
        raise

    assert best_val is not None
    metrics: dict[str, Any] = {}
    if rank_zero:
        final, calibration = _finalise_checkpoint(
            run_dir, cfg, best_val, PatchDataset(val_data, val_idx), fabric, progress
        )
        metrics = write_results(
            run_dir, cfg, val_data, val_idx, final, best_epoch, history, calibration
        )
        (run_dir / STATE_FILE).unlink(missing_ok=True)  # complete: nothing left to resume
        # model.onnx (checked on validation patches) and MODEL_CARD.md
        write_run_exports(run_dir, np.asarray(val_data.images[val_idx[:N_PROBE]]))
    fabric.barrier()
    if not rank_zero:  # DDP: the other processes return what rank 0 wrote
        metrics = json.loads((run_dir / "metrics.json").read_text())
    return RunResult(run_dir, metrics, best_epoch, pd.DataFrame(history), rank_zero)


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


def _open_data(
    cfg: TrainConfig, progress: bool
) -> tuple[CachedSplit, CachedSplit, np.ndarray, np.ndarray, str]:
    """Training and validation splits (cached), their usable rows and the protocol."""
    assert cfg.data is not None
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else None
    train_data = open_split(str(cfg.data), cfg.split, TRAIN_SPLITS, cache_root, progress)
    _require_labels(train_data)
    if cfg.val_data:
        val_data = open_split(cfg.val_data, cfg.val_split, VAL_SPLITS, cache_root, progress)
        _require_labels(val_data)
        train_idx, val_idx = train_data.usable_indices(), val_data.usable_indices()
        protocol = f"explicit validation set {cfg.val_data}"
    else:
        usable = train_data.usable_indices()
        tr_pos, va_pos = stratified_split(train_data.labels[usable], cfg.val_fraction, cfg.seed)
        train_idx, val_idx, val_data = usable[tr_pos], usable[va_pos], train_data
        protocol = (
            f"stratified {1 - cfg.val_fraction:.0%}/{cfg.val_fraction:.0%} split, seed {cfg.seed}"
        )
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise DataError(f"{cfg.data}: no usable patches left for training or validation")
    return train_data, val_data, train_idx, val_idx, protocol


def _gather(fabric: Any, out: EpochOutput) -> EpochOutput:
    """One process's training output -> all processes' (DDP shards are padded to equal size)."""
    probs = fabric.all_gather(torch.from_numpy(out.probs)).reshape(-1).cpu().numpy()
    labels = fabric.all_gather(torch.from_numpy(out.labels)).reshape(-1).cpu().numpy()
    loss = float(fabric.all_reduce(torch.tensor(out.loss), reduce_op="mean"))
    return EpochOutput(loss, probs, labels, out.seconds)


def _check_options(cfg: TrainConfig) -> Augmenter:
    """Every option that can be wrong, checked before any data is read; the augmenter."""
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise MetastasisError("epochs and batch_size must be at least 1")
    try:
        eval_batch_size("cpu", cfg.eval_batch_size)  # its own check, before any data is read
    except ValueError as err:
        raise MetastasisError(str(err)) from None
    check_schedule(cfg.schedule, cfg.epochs, cfg.warmup_epochs)
    if cfg.class_balance not in ("none", "loss", "sampler"):
        raise MetastasisError(
            f"unknown class_balance {cfg.class_balance!r}; known: none, loss, sampler"
        )
    if cfg.tta not in TTA_MODES:
        raise MetastasisError(f"unknown tta {cfg.tta!r}; known: {', '.join(TTA_MODES)}")
    if not 0 <= cfg.label_smoothing < 1:
        raise MetastasisError(f"label_smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if not 0 <= cfg.ema_decay < 1:
        raise MetastasisError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")
    if cfg.early_stopping < 0:
        raise MetastasisError("early_stopping must be 0 (off) or a number of epochs")
    if cfg.optimizer not in OPTIMIZERS:
        raise MetastasisError(
            f"unknown optimizer {cfg.optimizer!r}; known: {', '.join(OPTIMIZERS)}"
        )
    if cfg.model not in list_models():
        raise MetastasisError(
            f"unknown model {cfg.model!r}; known: {', '.join(list_models())} (metastasis models)"
        )
    if cfg.input_size is not None and cfg.input_size < 32:
        raise MetastasisError(f"input_size must be at least 32, got {cfg.input_size}")
    if not 0.01 <= cfg.mpp <= 100:  # also refuses NaN
        raise MetastasisError(f"mpp (microns per pixel) must be in 0.01..100, got {cfg.mpp}")
    if cfg.threshold_method != "fixed":  # parse it now, not after hours of training
        select_threshold([0, 1], [0.25, 0.75], cfg.threshold_method)
    return Augmenter(augment_spec(cfg.augment, cfg.augment_kwargs))


def _finalise_checkpoint(
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
    if cfg.tta != "none":
        model = bundle.build_model().to(fabric.device).to(memory_format=torch.channels_last)
        loader = DataLoader(
            val,
            batch_size=eval_batch_size(fabric.device, cfg.eval_batch_size),
            collate_fn=passthrough,
        )
        bar = tqdm(loader, desc=f"validating (tta {cfg.tta})", disable=not progress, leave=False)
        # In float32, as `predict` and `evaluate` run it: the threshold and temperature are
        # fitted on exactly the numbers they will be applied to.
        out = predict(model, bar, bundle.preprocessing, fabric.device, tta=cfg.tta)
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
    if cfg.threshold_method != "fixed":
        threshold, method = select_threshold(out.labels, out.probs, cfg.threshold_method)
    bundle.threshold, bundle.temperature, bundle.tta = threshold, temperature, cfg.tta
    bundle.metrics = {**bundle.metrics, "threshold_method": method}
    save_checkpoint(run_dir / FILENAME, bundle)
    log.info(
        "checkpoint: threshold %.4f (%s), temperature %.3f, tta %s",
        threshold,
        method,
        temperature,
        cfg.tta,
    )
    return out, {
        "threshold": threshold,
        "threshold_method": method,
        "temperature": temperature,
        "tta": cfg.tta,
    }


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


def _require_labels(data: CachedSplit) -> None:
    if not data.labelled:
        raise DataError(f"{data.name}: has no labels; training and validation need labels")


def _optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
        )
    raise MetastasisError(f"unknown optimizer {cfg.optimizer!r}; known: adam, adamw, sgd")
