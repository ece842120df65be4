"""One epoch of training, as a plain function, and its loss.

No paths, options or prints in here: the caller wraps the loader in a progress bar. Prediction
(validation included) is ``inference.batches.predict``, which fills the same output buffers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from metastasis.inference.batches import Batch, EpochOutput, OutputBuffer


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
    out = OutputBuffer(loader)
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
        out.add(torch.sigmoid(logits.detach()), targets, loss)
    seconds = time.perf_counter() - start
    probs, labels = out.result()
    return EpochOutput(
        loss=float(out.loss) / out.n if out.loss is not None else float("nan"),
        probs=probs.numpy(),
        labels=labels.numpy(),
        seconds=seconds,
    )
