"""One pass of prediction over a loader's batches, with test-time augmentation and temperature.

``predict`` is what every use of a model runs (``Predictor``, slides, serve) and what training
validates with (``engine.learner``, ``engine.finalise``): one loop, so validation numbers are the
numbers prediction gives. No paths, options or prints in here: the caller wraps the loader in a
progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metastasis.config import TTA_MODES  # declared with the other options
from metastasis.transforms.augment import d4_view

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class EpochOutput:
    """What one pass over a loader gives: a prediction pass, or an epoch of training
    (``engine.loop.train_one_epoch`` fills the same buffers)."""

    loss: float
    probs: np.ndarray
    labels: np.ndarray
    seconds: float
    logits: np.ndarray | None = None  # before any temperature (predict only)

    @property
    def patches_per_s(self) -> float:
        return len(self.labels) / self.seconds if self.seconds > 0 else float("nan")


class OutputBuffer:
    """Per-patch outputs of one pass, written into buffers allocated once.

    Appending each batch's few small tensors to a list would leave small long-lived blocks
    scattered through the heap between the large, short-lived activation buffers; glibc then
    cannot reuse or return that memory and a process's anonymous memory grows through every
    epoch (measured: 0.4 -> 2.1 GB in one PCam epoch). Buffers sized from the loader, doubled
    if the guess is short, keep the heap flat.
    """

    def __init__(self, loader: Iterable[Batch]) -> None:
        source: Any = getattr(loader, "iterable", loader)  # under a tqdm progress bar
        try:
            self.capacity = max(1, len(source.dataset))
        except (AttributeError, TypeError):
            self.capacity = 1024
        self.n = 0
        self.loss: torch.Tensor | None = None
        self.values = torch.empty(0)
        self.labels = torch.empty(0, dtype=torch.int64)

    def add(
        self, values: torch.Tensor, labels: torch.Tensor, loss: torch.Tensor | None = None
    ) -> None:
        n, end = len(labels), self.n + len(labels)
        if self.n == 0:  # on the device the outputs are on: no copy, no sync per batch
            self.values = values.new_empty(max(self.capacity, n), dtype=torch.float32)
            self.labels = labels.new_empty(max(self.capacity, n), dtype=torch.int64)
        elif end > len(self.values):
            size = max(end, 2 * len(self.values))
            self.values = torch.cat([self.values[: self.n], self.values.new_empty(size - self.n)])
            self.labels = torch.cat([self.labels[: self.n], self.labels.new_empty(size - self.n)])
        self.values[self.n : end] = values.detach().reshape(-1)
        self.labels[self.n : end] = labels.reshape(-1)
        if loss is not None:
            weighted = loss.detach().float() * n
            self.loss = weighted if self.loss is None else self.loss.add_(weighted)
        self.n = end

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.values[: self.n].cpu(), self.labels[: self.n].cpu()


def scaled_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``logits / temperature`` (temperature scaling; 1 changes nothing and copies nothing)."""
    return logits / temperature if temperature != 1.0 else logits


@torch.inference_mode()
def predict(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable[Batch],
    prepare: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device | None = None,
    tta: str = "none",
    temperature: float = 1.0,
) -> EpochOutput:
    """Sigmoid probabilities (and the mean BCE loss where labels exist) over ``loader``.

    ``tta="d4"`` averages the logits of the 8 dihedral views of each patch (rotations and
    flips; the label region, the centre 32 x 32, maps onto itself). ``temperature`` divides the
    logits before the sigmoid (temperature scaling; 1 changes nothing). ``model`` may be any
    callable from model input to logits, such as an inference engine (``inference.runtime``).
    """
    if tta not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {tta!r}; known: {', '.join(TTA_MODES)}")
    if isinstance(model, nn.Module):
        model.eval()
    start = time.perf_counter()
    out = OutputBuffer(loader)
    for images, targets in loader:
        if device is not None:
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
        if tta == "d4":
            views = [model(prepare(d4_view(images, k))).float() for k in range(8)]
            out.add(torch.stack(views).mean(0), targets)
        else:
            out.add(model(prepare(images)).float(), targets)
    seconds = time.perf_counter() - start
    raw, y = out.result()
    logits = scaled_logits(raw, temperature)
    labelled = bool(len(y)) and bool((y >= 0).all())
    loss = (
        float(F.binary_cross_entropy_with_logits(logits, y.float())) if labelled else float("nan")
    )
    return EpochOutput(loss, torch.sigmoid(logits).numpy(), y.numpy(), seconds, raw.numpy())
