"""The model and what trains it: optimiser, learning-rate schedule, EMA or SWA copy and
augmentation.

A ``Learner`` runs one epoch of training (``train_epoch``) and one pass of validation
(``validate``, on the EMA copy where there is one) on loaders it is given; ``weights`` are the
weights a checkpoint keeps. With stochastic weight averaging (``swa.py``) its last epochs run
on SWALR's rate and add their weights to the average, which ``average`` finishes (batch norm
recomputed) and validates at the end. Devices, precision and DDP come from the Lightning Fabric
it is built with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from metastasis.checkpoint import state_dict_cpu
from metastasis.config import OPTIMIZERS, TrainConfig
from metastasis.engine.ema import EMA
from metastasis.engine.finetune import model_choice
from metastasis.engine.loop import train_one_epoch
from metastasis.engine.schedule import build_scheduler
from metastasis.engine.swa import SWA, batch_norm_buffers, recompute_batch_norm
from metastasis.errors import MetastasisError
from metastasis.inference.batches import Batch, EpochOutput, predict
from metastasis.models import create_model
from metastasis.transforms.augment import Augmenter


class Learner:
    """Built after ``seed_everything``: creating the model draws its initial weights."""

    def __init__(self, cfg: TrainConfig, fabric: Any, augmenter: Augmenter) -> None:
        # what the checkpoint records: architecture, arguments, preprocessing (finetune.py)
        self.choice = choice = model_choice(cfg)
        model = create_model(choice.arch, **choice.kwargs)
        self.preprocessing = choice.preprocessing
        model = model.to(memory_format=torch.channels_last)
        self.ema = EMA(model, cfg.ema_decay) if cfg.ema_decay else None
        self.swa = (
            SWA(model, cfg.swa_epochs, cfg.epochs, cfg.swa_lr, cfg.swa_anneal_epochs)
            if cfg.swa_epochs
            else None
        )
        self.raw_model, self.raw_optimizer = model, make_optimizer(cfg, model)
        self.model, self.optimizer = fabric.setup(model, self.raw_optimizer)
        if self.ema is not None:
            self.ema.module.to(fabric.device)
        if self.swa is not None:  # the average and its count (n_averaged) alike
            self.swa.averaged.to(fabric.device)
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.fabric, self.augmenter = fabric, augmenter
        # its own generator, a stream per process: augmentation never shifts the data order
        self.aug_gen = torch.Generator().manual_seed(cfg.seed + 1 + 1000 * fabric.global_rank)
        self.last_lr = math.nan  # the learning rate of the latest optimiser step

    def schedule(self, cfg: TrainConfig, steps_per_epoch: int) -> None:
        """The learning-rate schedule, stepped after every optimiser step."""
        self.scheduler = build_scheduler(
            cfg.schedule, self.raw_optimizer, cfg.epochs, steps_per_epoch, cfg.warmup_epochs
        )
        self.steps_per_epoch = steps_per_epoch

    def enter_epoch(self, epoch: int) -> None:
        """Ready the objects for ``epoch``: from SWA's first epoch on, SWALR is the schedule.
        (A resumed run calls it with the last completed epoch, before the saved state is put
        back, so that the state's scheduler finds its own kind.)"""
        if self.swa is not None and self.swa.averages(epoch) and not self.in_swa:
            self.scheduler = self.swa.scheduler(self.raw_optimizer, self.steps_per_epoch)

    @property
    def in_swa(self) -> bool:
        return isinstance(self.scheduler, torch.optim.swa_utils.SWALR)

    def train_epoch(
        self,
        loader: Iterable[Batch],
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        on_step: Callable[[], None] | None = None,
        epoch: int | None = None,
    ) -> EpochOutput:
        """One epoch over ``loader`` (``epoch``: its number, for SWA); under DDP, the outputs of
        every process."""
        if epoch is not None:
            self.enter_epoch(epoch)

        def prepare(x: torch.Tensor) -> torch.Tensor:
            return self.preprocessing(self.augmenter(x, self.aug_gen))

        def after_step() -> None:
            self.last_lr = float(self.raw_optimizer.param_groups[0]["lr"])
            if self.scheduler is not None:
                self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            if on_step is not None:
                on_step()

        out = train_one_epoch(
            self.model,
            loader,
            self.optimizer,
            prepare,
            backward=self.fabric.backward,
            loss_fn=loss_fn,
            after_step=after_step,
        )
        if self.swa is not None and epoch is not None and self.swa.averages(epoch):
            self.swa.update(self.raw_model)
        return _gather(self.fabric, out) if self.fabric.world_size > 1 else out

    def validate(self, loader: Iterable[Batch]) -> EpochOutput:
        """Predictions of the EMA copy (its buffers synced first), or of the live model."""
        if self.ema is None:
            return predict(self.model, loader, self.preprocessing)
        self.ema.sync_buffers(self.model)
        with self.fabric.autocast():
            return predict(self.ema.module, loader, self.preprocessing)

    def average(self, loader: Iterable[Batch], val: Iterable[Batch]) -> tuple[EpochOutput, float]:
        """SWA's end: batch norm recomputed over ``loader`` (the training rows, through the
        preprocessing, no augmentation; averaged over the processes under DDP), then the
        average validated on ``val``; (its validation output, the seconds batch norm took)."""
        if self.swa is None:
            raise MetastasisError("no weights are being averaged (swa_epochs is 0)")
        reduce = self._mean_over_processes if self.fabric.world_size > 1 else None
        with self.fabric.autocast():
            seconds = recompute_batch_norm(self.swa.module, loader, self.preprocessing, reduce)
            return predict(self.swa.module, val, self.preprocessing), seconds

    def _mean_over_processes(self, model: nn.Module) -> None:
        # Equal shards (DistributedSampler pads them): the mean of the processes' means over
        # their batches is the mean over every batch, as one process would compute it.
        for buf in batch_norm_buffers(model):
            buf.copy_(self.fabric.all_reduce(buf, reduce_op="mean"))

    def weights(self) -> dict[str, torch.Tensor]:
        """The weights an epoch's checkpoint keeps (the EMA's where there is one), on the CPU;
        the SWA average's are ``swa.weights()``."""
        return self.ema.state_dict() if self.ema is not None else state_dict_cpu(self.model)

    def rngs(self) -> dict[str, torch.Generator]:
        """The learner's generators for a training state: the global one and augmentation's."""
        return {"torch": torch.default_generator, "augment": self.aug_gen}


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = parameter_groups(model, cfg.lr, cfg.encoder_lr_scale)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
        )
    raise MetastasisError(f"unknown optimizer {cfg.optimizer!r}; known: {', '.join(OPTIMIZERS)}")


def parameter_groups(model: nn.Module, lr: float, encoder_lr_scale: float) -> Any:
    """Every parameter at ``lr``; for a fine-tuned encoder (``model.tuned``: its trainable
    blocks, ``models.encoder_probe``) two groups: the head at ``lr``, the blocks at
    ``lr * encoder_lr_scale`` (pretrained blocks move less than a new head), frozen ones left
    out."""
    tuned = getattr(model, "tuned", None)
    if not tuned:
        return model.parameters()
    encoder = {id(p) for m in tuned.values() for p in m.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in trainable if id(p) not in encoder], "lr": lr},
        {"params": [p for p in trainable if id(p) in encoder], "lr": lr * encoder_lr_scale},
    ]


def _gather(fabric: Any, out: EpochOutput) -> EpochOutput:
    """One process's training output -> all processes' (DDP shards are padded to equal size)."""
    probs = fabric.all_gather(torch.from_numpy(out.probs)).reshape(-1).cpu().numpy()
    labels = fabric.all_gather(torch.from_numpy(out.labels)).reshape(-1).cpu().numpy()
    loss = float(fabric.all_reduce(torch.tensor(out.loss), reduce_op="mean"))
    return EpochOutput(loss, probs, labels, out.seconds)
