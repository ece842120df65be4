"""Stochastic weight averaging (SWA; Izmailov et al., 2018), with ``torch.optim.swa_utils``.

Over the last ``swa_epochs`` epochs ``SWALR`` replaces the learning-rate schedule: it holds
``swa_lr`` (by default the schedule's own rate where averaging starts, so the rate stops
falling there), after a cosine move to it over ``swa_anneal_epochs``; it is stepped after every
optimiser step, like the schedules. At the end of each of those epochs the live weights join an
equal-weight average (``AveragedModel``, as in the paper: one snapshot per epoch). At the end
of the run batch norm's running statistics, which are not averages of the snapshots' own, are
recomputed with one pass over the training patches (``recompute_batch_norm``: the same rows,
in a fixed order, through the model's preprocessing and without augmentation, i.e. the inputs
the model sees when it predicts); the average is then validated and saved instead of the best
epoch (``trainer.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from metastasis.checkpoint import state_dict_cpu
from metastasis.inference.batches import Batch


class SWA:
    """The running average of the last ``epochs`` epochs' weights out of ``total``."""

    def __init__(
        self,
        model: nn.Module,
        epochs: int,
        total: int,
        lr: float | None = None,
        anneal_epochs: float = 0.0,
    ) -> None:
        if not 0 < epochs < total:
            raise ValueError(f"SWA needs 0 < epochs < total, got {epochs} of {total}")
        self.first_epoch = total - epochs + 1  # the first epoch whose end is averaged
        self.lr, self.anneal_epochs = lr, anneal_epochs
        self.averaged = AveragedModel(model)  # a copy: the live model is not touched
        self.averaged.eval()

    def averages(self, epoch: int) -> bool:
        """Whether ``epoch`` is one of the averaged epochs (SWALR's schedule runs in them)."""
        return epoch >= self.first_epoch

    def scheduler(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> SWALR:
        """SWALR from the optimiser's current rate (the schedule's) to ``lr`` (default: that
        same rate, held), stepped per batch."""
        lrs = [float(g["lr"]) for g in optimizer.param_groups]
        swa_lr = [self.lr] * len(lrs) if self.lr is not None else lrs
        steps = round(self.anneal_epochs * steps_per_epoch)
        return SWALR(optimizer, swa_lr=swa_lr, anneal_epochs=steps, anneal_strategy="cos")  # type: ignore[arg-type]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Add the live weights at the end of an averaged epoch."""
        self.averaged.update_parameters(model)

    @property
    def module(self) -> nn.Module:
        """The averaged model itself (``AveragedModel.module``)."""
        return self.averaged.module

    @property
    def n_averaged(self) -> int:
        return int(self.averaged.n_averaged)

    def weights(self) -> dict[str, torch.Tensor]:
        """The averaged model's state dict on the CPU, as the plain model's (no ``module.``
        prefix, no ``n_averaged``): what a checkpoint keeps."""
        return state_dict_cpu(self.module)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """For a training state: the average and how many snapshots it holds."""
        return state_dict_cpu(self.averaged)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.averaged.load_state_dict(state)


def recompute_batch_norm(
    model: nn.Module,
    loader: Iterable[Batch],
    prepare: Callable[[torch.Tensor], torch.Tensor],
    reduce: Callable[[nn.Module], None] | None = None,
) -> float:
    """Batch norm's running statistics of ``model`` recomputed from one pass over ``loader``
    (``torch.optim.swa_utils.update_bn``: the equal-weight mean over batches), each uint8
    batch made model input by ``prepare`` as in training; ``reduce`` then combines the
    processes' statistics under DDP. The seconds it took."""
    start = time.perf_counter()
    update_bn((prepare(images) for images, _ in loader), model)
    if reduce is not None:
        reduce(model)
    return time.perf_counter() - start


def batch_norm_buffers(model: nn.Module) -> list[torch.Tensor]:
    """The running means and variances of ``model``'s batch norm layers."""
    out: list[Any] = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            out += [m.running_mean, m.running_var]
    return out
