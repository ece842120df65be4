"""The full training state, saved after every epoch so a killed run can resume exactly.

``last.pt`` holds the weights, the optimiser, the EMA copy or the SWA average so far, every
random-number generator that decides data order, augmentation and dropout, the history and the
best epoch so far. Like checkpoints it holds only tensors and plain values and loads with
``weights_only=True``.

``TrainState.capture`` and ``TrainState.restore`` are a pair: whatever one takes from the live
objects, the other puts back, so a resumed run continues exactly where the saved one stopped.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from metastasis.checkpoint import state_dict_cpu
from metastasis.engine.best import BestEpoch
from metastasis.errors import CheckpointError, DataError, first_line
from metastasis.inference.batches import EpochOutput
from metastasis.io import atomic_path

if TYPE_CHECKING:
    from torch import nn
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler

    from metastasis.engine.ema import EMA
    from metastasis.engine.swa import SWA

FORMAT = "metastasis-train-state/1"
FILENAME = "last.pt"


@dataclass
class TrainState:
    epoch: int  # last completed epoch
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, torch.Tensor]  # "torch" (global), "loader", "augment"
    history: list[dict[str, Any]]
    best_score: float
    best_epoch: int
    best_probs: torch.Tensor
    best_labels: torch.Tensor
    fingerprints: dict[str, str]
    scheduler: dict[str, Any] | None = None
    ema: dict[str, torch.Tensor] | None = None
    swa: dict[str, torch.Tensor] | None = None  # the average so far and its n_averaged

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **self.__dict__}

    @classmethod
    def capture(
        cls,
        epoch: int,
        *,
        model: nn.Module,
        optimizer: Optimizer,
        scheduler: LRScheduler | None,
        ema: EMA | None,
        rngs: Mapping[str, torch.Generator],
        swa: SWA | None = None,
        history: list[dict[str, Any]],
        best: BestEpoch,
        fingerprints: Mapping[str, str],
    ) -> TrainState:
        """A copy of everything that decides the rest of the run, after ``epoch``.

        ``rngs``: the generators by name ("torch": ``torch.default_generator``, "loader",
        "augment"). Nothing in the state shares memory with the live objects."""
        if best.val is None:
            raise ValueError("no best epoch yet: capture after an epoch's validation")
        return cls(
            epoch=epoch,
            model=state_dict_cpu(model),
            optimizer=copy.deepcopy(optimizer.state_dict()),
            rng={name: gen.get_state() for name, gen in rngs.items()},
            history=[dict(row) for row in history],
            best_score=best.score,
            best_epoch=best.epoch,
            best_probs=torch.from_numpy(best.val.probs).clone(),
            best_labels=torch.from_numpy(best.val.labels).clone(),
            fingerprints=dict(fingerprints),
            scheduler=copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None,
            ema=ema.state_dict() if ema is not None else None,
            swa=swa.state_dict() if swa is not None else None,
        )

    def restore(
        self,
        *,
        model: nn.Module,
        optimizer: Optimizer,
        scheduler: LRScheduler | None,
        ema: EMA | None,
        rngs: Mapping[str, torch.Generator],
        swa: SWA | None = None,
        history: list[dict[str, Any]],
        best: BestEpoch,
        fingerprints: Mapping[str, str],
    ) -> None:
        """Put the captured state back into the live objects (``history`` and ``best`` are
        filled in place); refuses data whose fingerprints differ from the captured ones."""
        if dict(fingerprints) != self.fingerprints:
            raise DataError("the data changed since this run started; cannot resume")
        model.load_state_dict(self.model)
        optimizer.load_state_dict(self.optimizer)
        for name, gen in rngs.items():
            gen.set_state(self.rng[name])
        if scheduler is not None and self.scheduler is not None:
            scheduler.load_state_dict(self.scheduler)
        if ema is not None and self.ema is not None:
            ema.load_state_dict(self.ema)
        if swa is not None and self.swa is not None:
            swa.load_state_dict(self.swa)
        history[:] = [dict(row) for row in self.history]
        best.score, best.epoch = self.best_score, self.best_epoch
        # Only the probabilities are kept: finalisation recomputes logits from them.
        best.val = EpochOutput(math.nan, self.best_probs.numpy(), self.best_labels.numpy(), 0.0)


def save_train_state(run_dir: Path, state: TrainState) -> Path:
    path = run_dir / FILENAME
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a full disk raises OSError
        torch.save(state.to_dict(), fh)
    return path


def load_train_state(run_dir: Path) -> TrainState | None:
    """The saved state, or None when no epoch finished before the run stopped."""
    path = run_dir / FILENAME
    if not path.is_file():
        return None
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable or refused: never guess
        raise CheckpointError(f"{path}: cannot resume from it ({first_line(exc)[:160]})") from None
    if not isinstance(raw, dict) or raw.pop("format", None) != FORMAT:
        raise CheckpointError(f"{path}: not a metastasis training state")
    try:
        return TrainState(**raw)
    except TypeError as exc:
        raise CheckpointError(f"{path}: malformed training state ({exc})") from None
