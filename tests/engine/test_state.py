"""TrainState.capture and TrainState.restore as a pair, without training.

A tiny real model, optimiser, schedule, EMA and generators are stepped a few times, captured,
perturbed in every piece, restored; every piece must then be bit-identical to the capture, and
the next steps must be the ones the unperturbed objects would have taken.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from metastasis.engine.best import BestEpoch
from metastasis.engine.ema import EMA
from metastasis.engine.schedule import build_scheduler
from metastasis.engine.state import TrainState, load_train_state, save_train_state
from metastasis.errors import DataError
from metastasis.inference.batches import EpochOutput

FINGERPRINTS = {"train": "a" * 20, "val": "b" * 20}


class Live:
    """The live objects of a run: what ``fit`` captures from and restores into."""

    def __init__(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = nn.Sequential(
            nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 1)
        )
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-2, weight_decay=1e-4)
        self.scheduler = build_scheduler("onecycle", self.optimizer, 3, 4)
        self.ema = EMA(self.model, 0.9)
        self.rngs = {
            "torch": torch.default_generator,
            "loader": torch.Generator().manual_seed(seed + 7),
            "augment": torch.Generator().manual_seed(seed + 11),
        }
        self.history: list[dict[str, Any]] = []
        self.best = BestEpoch()

    def pieces(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "ema": self.ema,
            "rngs": self.rngs,
            "history": self.history,
            "best": self.best,
            "fingerprints": FINGERPRINTS,
        }

    def step(self, epoch: int) -> float:
        """A training step drawing from every generator; then an 'epoch' of bookkeeping."""
        x = torch.randn(6, 4, generator=self.rngs["loader"])
        x = x + 0.1 * torch.rand(6, 4, generator=self.rngs["augment"])
        self.model.train()
        loss = self.model(x).square().mean()  # dropout draws from the global generator
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.model)
        row = {"epoch": epoch, "val_roc_auc": 0.5 + 0.1 * epoch, "val_loss": float(loss.detach())}
        self.history.append(row)
        probs = torch.rand(5, generator=self.rngs["loader"]).numpy()
        self.best.update(
            epoch, row, EpochOutput(float(loss.detach()), probs, np.arange(5) % 2, 0.1)
        )
        return float(loss.detach())

    def perturb(self) -> None:
        """Change every piece, as more training (or another run) would."""
        with torch.no_grad():
            for p in self.model.parameters():
                p.add_(1.0)
            for p in self.ema.module.parameters():
                p.mul_(-2.0)
        for _ in range(3):
            self.step(99)
        torch.rand(5)  # the global generator moves on
        self.history.append({"epoch": 100, "val_roc_auc": 0.0, "val_loss": 9.0})
        self.best.score, self.best.epoch = 0.99, 100
        self.best.val = EpochOutput(1.0, np.zeros(2, np.float32), np.zeros(2, np.int64), 1.0)


def _tensors_equal(a: Any, b: Any) -> bool:
    """Bit-identical nested dicts/lists of tensors and plain values (NaN equals NaN)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_tensors_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return bool(a == b)


def _assert_state_equal(a: TrainState, b: TrainState) -> None:
    for name in a.__dataclass_fields__:
        assert _tensors_equal(getattr(a, name), getattr(b, name)), name


def _live_after_two_epochs() -> Live:
    live = Live()
    for epoch in (1, 2):
        live.step(epoch)
    return live


def test_restore_puts_back_exactly_what_capture_took() -> None:
    live = _live_after_two_epochs()
    state = TrainState.capture(2, **live.pieces())
    reference = copy.deepcopy(state)
    expected_next = _live_after_two_epochs()  # the same run again, never perturbed
    live.perturb()
    _assert_state_equal(state, reference)  # the capture shares nothing with the live objects
    assert not _tensors_equal(TrainState.capture(2, **live.pieces()).model, state.model)

    state.restore(**live.pieces())
    again = TrainState.capture(2, **live.pieces())
    _assert_state_equal(again, reference)  # every piece, bit for bit
    assert live.history == reference.history and live.best.epoch == 2
    assert live.best.val is not None
    np.testing.assert_array_equal(live.best.val.probs, reference.best_probs.numpy())
    # ... and the run continues as if never interrupted (the rngs, dropout, EMA, schedule).
    torch.set_rng_state(reference.rng["torch"])
    want = expected_next.step(3)
    torch.set_rng_state(reference.rng["torch"])
    assert live.step(3) == want
    for a, b in zip(live.model.parameters(), expected_next.model.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(
        live.ema.module.parameters(), expected_next.ema.module.parameters(), strict=True
    ):
        assert torch.equal(a, b)
    assert live.scheduler.get_last_lr() == expected_next.scheduler.get_last_lr()


def test_a_capture_round_trips_through_last_pt(tmp_path: Path) -> None:
    live = _live_after_two_epochs()
    state = TrainState.capture(2, **live.pieces())
    path = save_train_state(tmp_path, state)
    assert path == tmp_path / "last.pt"
    loaded = load_train_state(tmp_path)
    assert loaded is not None
    _assert_state_equal(loaded, state)
    live.perturb()
    loaded.restore(**live.pieces())
    _assert_state_equal(TrainState.capture(2, **live.pieces()), state)


def test_restore_refuses_other_data_and_capture_needs_a_validation() -> None:
    live = _live_after_two_epochs()
    state = TrainState.capture(2, **live.pieces())
    before = {k: v.clone() for k, v in live.model.state_dict().items()}
    with pytest.raises(DataError, match="data changed"):
        state.restore(**{**live.pieces(), "fingerprints": {**FINGERPRINTS, "val": "c" * 20}})
    assert all(torch.equal(before[k], v) for k, v in live.model.state_dict().items())
    with pytest.raises(ValueError, match="no best epoch"):
        TrainState.capture(0, **{**live.pieces(), "best": BestEpoch()})
