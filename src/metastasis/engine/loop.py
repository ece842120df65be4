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

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class EpochOutput:
    loss: float
    probs: np.ndarray
    labels: np.ndarray
    seconds: float

    @property
    def patches_per_s(self) -> float:
        return len(self.labels) / self.seconds if self.seconds > 0 else float("nan")


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
    device: torch.device | None = None,
) -> EpochOutput:
    """Train over ``loader`` once. ``prepare`` turns a uint8 NHWC batch into model input
    (augmentation + preprocessing); ``backward`` lets Fabric scale the loss."""
    model.train()
    start = time.perf_counter()
    total, losses, probs, labels = 0, [], [], []
    for images, targets in loader:
        if device is not None:
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
        logits = model(prepare(images)).float()
        loss = F.binary_cross_entropy_with_logits(logits, targets.float())
        optimizer.zero_grad(set_to_none=True)
        backward(loss)
        optimizer.step()
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


@torch.inference_mode()
def predict(
    model: nn.Module,
    loader: Iterable[Batch],
    prepare: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device | None = None,
) -> EpochOutput:
    """Sigmoid probabilities (and the mean BCE loss where labels exist) over ``loader``."""
    model.eval()
    start = time.perf_counter()
    logits_all, labels = [], []
    for images, targets in loader:
        if device is not None:
            images = images.to(device, non_blocking=True)
        logits_all.append(model(prepare(images)).float().cpu())
        labels.append(targets.cpu())
    seconds = time.perf_counter() - start
    logits = torch.cat(logits_all) if logits_all else torch.empty(0)
    y = torch.cat(labels) if labels else torch.empty(0, dtype=torch.int64)
    labelled = bool(len(y)) and bool((y >= 0).all())
    loss = (
        float(F.binary_cross_entropy_with_logits(logits, y.float())) if labelled else float("nan")
    )
    return EpochOutput(loss, torch.sigmoid(logits).numpy(), y.numpy(), seconds)
