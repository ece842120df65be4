"""One epoch of training and one pass of prediction, as plain functions.

No paths, options or prints in here: the caller wraps the loader in a progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metastasis.transforms.augment import d4_view

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class EpochOutput:
    loss: float
    probs: np.ndarray
    labels: np.ndarray
    seconds: float
    logits: np.ndarray | None = None  # before any temperature (predict only)

    @property
    def patches_per_s(self) -> float:
        return len(self.labels) / self.seconds if self.seconds > 0 else float("nan")


def bce_loss(
    label_smoothing: float = 0.0, pos_weight: float | None = None
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Binary cross-entropy on logits, with targets ``y (1 - s) + s / 2`` and an optional weight
    on the positive class (``n_negative / n_positive`` balances the classes)."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {label_smoothing}")

    weight = None if pos_weight is None else torch.tensor(pos_weight)

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        t = targets.float()
        if label_smoothing:
            t = t * (1.0 - label_smoothing) + 0.5 * label_smoothing
        w = None if weight is None else weight.to(logits.device)  # a no-op after the first
        return F.binary_cross_entropy_with_logits(logits, t, pos_weight=w)

    return loss


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
    device: torch.device | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    after_step: Callable[[], None] | None = None,
) -> EpochOutput:
    """Train over ``loader`` once. ``prepare`` turns a uint8 NHWC batch into model input
    (augmentation + preprocessing); ``backward`` lets Fabric scale the loss; ``loss_fn``
    defaults to plain BCE; ``after_step`` runs after each optimiser step (schedule, EMA)."""
    loss_fn = loss_fn or bce_loss()
    model.train()
    start = time.perf_counter()
    total, losses, probs, labels = 0, [], [], []
    for images, targets in loader:
        if device is not None:
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
        logits = model(prepare(images)).float()
        loss = loss_fn(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        backward(loss)
        optimizer.step()
        if after_step is not None:
            after_step()
        n = len(targets)
        total += n
        losses.append(loss.detach() * n)
        probs.append(torch.sigmoid(logits.detach()))
        labels.append(targets)
    seconds = time.perf_counter() - start
    return EpochOutput(
        loss=float(torch.stack(losses).sum()) / max(total, 1),
        probs=torch.cat(probs).cpu().numpy() if probs else np.empty(0, np.float32),
        labels=torch.cat(labels).cpu().numpy() if labels else np.empty(0, np.int64),
        seconds=seconds,
    )


TTA_MODES = ("none", "d4")


@torch.inference_mode()
def predict(
    model: nn.Module,
    loader: Iterable[Batch],
    prepare: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device | None = None,
    tta: str = "none",
    temperature: float = 1.0,
) -> EpochOutput:
    """Sigmoid probabilities (and the mean BCE loss where labels exist) over ``loader``.

    ``tta="d4"`` averages the logits of the 8 dihedral views of each patch (rotations and
    flips; the label region, the centre 32 x 32, maps onto itself). ``temperature`` divides the
    logits before the sigmoid (temperature scaling; 1 changes nothing).
    """
    if tta not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {tta!r}; known: {', '.join(TTA_MODES)}")
    model.eval()
    start = time.perf_counter()
    logits_all, labels = [], []
    for images, targets in loader:
        if device is not None:
            images = images.to(device, non_blocking=True)
        if tta == "d4":
            views = [model(prepare(d4_view(images, k))).float() for k in range(8)]
            logits_all.append(torch.stack(views).mean(0).cpu())
        else:
            logits_all.append(model(prepare(images)).float().cpu())
        labels.append(targets.cpu())
    seconds = time.perf_counter() - start
    raw = torch.cat(logits_all) if logits_all else torch.empty(0)
    logits = raw / temperature if temperature != 1.0 else raw
    y = torch.cat(labels) if labels else torch.empty(0, dtype=torch.int64)
    labelled = bool(len(y)) and bool((y >= 0).all())
    loss = (
        float(F.binary_cross_entropy_with_logits(logits, y.float())) if labelled else float("nan")
    )
    return EpochOutput(loss, torch.sigmoid(logits).numpy(), y.numpy(), seconds, raw.numpy())
