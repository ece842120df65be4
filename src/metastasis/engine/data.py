"""The training run's data: the two splits and their rows, the loaders, the sampler and the loss.

``open_training_data`` opens (and caches) ``--data`` and ``--val-data``, or splits ``--data``
when no validation set is given; ``make_loaders`` wraps the rows in loaders (a class-balanced
sampler where asked, a shard per process under DDP); ``make_loss`` is the BCE loss with the
class balance and label smoothing of the config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from metastasis.config import TrainConfig
from metastasis.data.cache import CachedSplit, open_split
from metastasis.data.dataset import PatchDataset, passthrough
from metastasis.data.id_lists import LeftOut, leave_out
from metastasis.data.splits import TRAIN_SPLITS, VAL_SPLITS, stratified_split
from metastasis.engine.environment import eval_batch_size, loader_workers
from metastasis.engine.loop import bce_loss
from metastasis.errors import DataError, MetastasisError

__all__ = [
    "Loaders",
    "TrainingData",
    "batch_norm_loader",
    "make_loaders",
    "make_loss",
    "open_training_data",
]


@dataclass
class TrainingData:
    """The cached splits and the rows of each that the run uses (``val`` may be ``train``)."""

    train: CachedSplit
    val: CachedSplit
    train_idx: np.ndarray
    val_idx: np.ndarray
    protocol: str  # how validation was chosen, in words
    left_out: LeftOut | None = None  # what ``cfg.exclude`` left out

    @property
    def fingerprints(self) -> dict[str, str]:
        return {"train": self.train.fingerprint, "val": self.val.fingerprint}

    @property
    def train_labels(self) -> np.ndarray:
        return self.train.labels[self.train_idx]

    def val_dataset(self) -> PatchDataset:
        return PatchDataset(self.val, self.val_idx)


@dataclass
class Loaders:
    train: Any  # a DataLoader (Fabric wraps it)
    val: Any
    generator: torch.Generator  # decides the order of the training rows (restored on resume)
    workers: int
    eval_batch: int


def open_training_data(cfg: TrainConfig, progress: bool) -> TrainingData:
    """Training and validation splits (cached), their usable rows, the protocol and what
    ``cfg.exclude`` left out."""
    if cfg.data is None:
        raise MetastasisError("no training data: pass --data DIR or set `data:` in the config")
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else None
    train = open_split(str(cfg.data), cfg.split, TRAIN_SPLITS, cache_root, progress)
    _require_labels(train)
    if cfg.val_data:
        val = open_split(cfg.val_data, cfg.val_split, VAL_SPLITS, cache_root, progress)
        _require_labels(val)
        train_idx, val_idx = train.usable_indices(), val.usable_indices()
        protocol = f"explicit validation set {cfg.val_data}"
    else:
        usable = train.usable_indices()
        tr_pos, va_pos = stratified_split(train.labels[usable], cfg.val_fraction, cfg.seed)
        train_idx, val_idx, val = usable[tr_pos], usable[va_pos], train
        protocol = (
            f"stratified {1 - cfg.val_fraction:.0%}/{cfg.val_fraction:.0%} split, seed {cfg.seed}"
        )
    left_out = None
    if cfg.exclude:  # after the split, so every other patch stays on its side
        train_idx, val_idx, left_out = leave_out(cfg.exclude, train, train_idx, val, val_idx)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise DataError(f"{cfg.data}: no usable patches left for training or validation")
    return TrainingData(train, val, train_idx, val_idx, protocol, left_out)


def make_loaders(cfg: TrainConfig, data: TrainingData, fabric: Any) -> Loaders:
    """Shuffled (or class-balanced) training batches, a shard per process under DDP; all the
    validation rows in order, in every process."""
    device = fabric.device
    pin = device.type == "cuda"
    workers = loader_workers(device, cfg.num_workers)
    eval_batch = eval_batch_size(device, cfg.eval_batch_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    sampler = None
    if cfg.class_balance == "sampler":
        # Each class drawn equally often (with replacement); an epoch keeps its usual length.
        labels = data.train_labels
        n_pos = int((labels == 1).sum())
        n_neg = len(labels) - n_pos
        weights = np.where(labels == 1, 1.0 / max(n_pos, 1), 1.0 / max(n_neg, 1))
        sampler = WeightedRandomSampler(weights.tolist(), len(weights), generator=gen)
    train = DataLoader(
        PatchDataset(data.train, data.train_idx),
        batch_size=cfg.batch_size,
        shuffle=cfg.shuffle and sampler is None,
        sampler=sampler,
        generator=gen,
        collate_fn=passthrough,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
    )
    val = DataLoader(
        data.val_dataset(),
        batch_size=eval_batch,
        shuffle=False,
        collate_fn=passthrough,
        num_workers=workers,
        pin_memory=pin,
    )
    return Loaders(
        train=fabric.setup_dataloaders(train),  # DDP: a shard per process
        val=fabric.setup_dataloaders(val, use_distributed_sampler=False),  # all of it
        generator=gen,
        workers=workers,
        eval_batch=eval_batch,
    )


def batch_norm_loader(cfg: TrainConfig, data: TrainingData, fabric: Any, workers: int) -> Any:
    """The training rows once, in order, in training batches (a shard per process under DDP):
    what SWA's batch norm statistics are recomputed from."""
    loader = DataLoader(
        PatchDataset(data.train, data.train_idx),
        batch_size=cfg.batch_size,
        shuffle=False,
        collate_fn=passthrough,
        num_workers=workers,
        pin_memory=fabric.device.type == "cuda",
    )
    return fabric.setup_dataloaders(loader)


def make_loss(
    cfg: TrainConfig, train_labels: np.ndarray
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """BCE with label smoothing; ``class_balance: loss`` weighs positives by negatives/positives."""
    n_pos = int((train_labels == 1).sum())
    n_neg = len(train_labels) - n_pos
    pos_weight = n_neg / max(n_pos, 1) if cfg.class_balance == "loss" else None
    return bce_loss(cfg.label_smoothing, pos_weight)


def _require_labels(data: CachedSplit) -> None:
    if not data.labelled:
        raise DataError(f"{data.name}: has no labels; training and validation need labels")
