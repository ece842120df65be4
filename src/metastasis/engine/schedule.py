"""Learning-rate schedules, stepped once per training batch.

- ``constant``: the seed's fixed learning rate (an optional linear warm-up first).
- ``cosine``: linear warm-up over ``warmup_epochs``, then cosine decay to zero (Loshchilov &
  Hutter's SGDR without restarts).
- ``onecycle``: ``torch.optim.lr_scheduler.OneCycleLR`` (Smith & Topin): cosine rise from
  ``lr / 25`` to ``lr`` over ``warmup_epochs`` (default 30% of the run; at least 2 steps), then
  cosine fall to ``lr / 25 / 10^4``.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from metastasis.config import SCHEDULES
from metastasis.errors import MetastasisError


def check_schedule(name: str, epochs: int, warmup_epochs: float = 0.0) -> None:
    """Raise a one-line error for an unknown schedule or a warm-up outside [0, epochs)."""
    if name not in SCHEDULES:
        raise MetastasisError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
    if warmup_epochs < 0 or warmup_epochs >= max(epochs, 1):
        raise MetastasisError(
            f"warmup_epochs must be in [0, epochs), got {warmup_epochs} for {epochs} epochs"
        )


def build_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
) -> LRScheduler | None:
    """The scheduler (None for a constant rate without warm-up)."""
    check_schedule(name, epochs, warmup_epochs)
    total = max(epochs * steps_per_epoch, 1)
    warmup = round(warmup_epochs * steps_per_epoch)
    if name == "onecycle":
        if total < 3:  # too short for a rise and a fall
            return None
        max_lr = [group["lr"] for group in optimizer.param_groups]
        if warmup_epochs:  # OneCycleLR needs a rise of 2+ steps and a fall of 1+
            warmup = min(max(warmup, 2), total - 1)
        pct = warmup / total if warmup_epochs else 0.3
        return OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, pct_start=pct)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if name == "constant":
            return 1.0
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    if name == "constant" and not warmup:
        return None
    return LambdaLR(optimizer, factor)
