import itertools
import math

import pytest
import torch
from torch import nn

from metastasis.engine.schedule import build_scheduler
from metastasis.errors import MetastasisError

LR = 0.1


def _optimizer(lr: float = LR) -> torch.optim.Optimizer:
    return torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=lr)


def _lrs(name: str, epochs: int, steps: int, warmup: float) -> list[float]:
    """The learning rate each of the ``epochs * steps`` optimiser steps runs with, stepping the
    scheduler after every step as the trainer does."""
    opt = _optimizer()
    sched = build_scheduler(name, opt, epochs, steps, warmup)
    assert sched is not None
    out = []
    for _ in range(epochs * steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_warms_up_linearly_then_follows_half_cosine_to_zero() -> None:
    epochs, steps, warmup = 4, 5, 1.0  # 20 steps, the first 5 warm-up
    lrs = _lrs("cosine", epochs, steps, warmup)
    assert len(lrs) == 20
    # Warm-up: LR * (i + 1) / 5 at step i.
    for i, expected in enumerate([0.02, 0.04, 0.06, 0.08, 0.1]):
        assert lrs[i] == pytest.approx(expected, rel=1e-9), i
    # Then LR * 0.5 * (1 + cos(pi * (i - 5) / 15)), hand-computed at a few steps.
    assert lrs[5] == pytest.approx(0.1, rel=1e-9)
    assert lrs[10] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 3)), rel=1e-9)  # 0.075
    assert lrs[10] == pytest.approx(0.075, rel=1e-9)
    assert lrs[12] == pytest.approx(0.05 * (1 + math.cos(7 * math.pi / 15)), rel=1e-9)
    assert lrs[19] == pytest.approx(0.05 * (1 + math.cos(14 * math.pi / 15)), rel=1e-9)
    assert lrs[19] < 0.002  # ~0 at the last step
    assert all(a >= b for a, b in itertools.pairwise(lrs[5:]))  # monotone decay


def test_cosine_reaches_zero_after_the_last_step() -> None:
    opt = _optimizer()
    sched = build_scheduler("cosine", opt, 2, 3, 0.0)
    assert sched is not None
    assert opt.param_groups[0]["lr"] == pytest.approx(LR)  # no warm-up: starts at LR
    for _ in range(6):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_onecycle_peaks_at_lr_at_the_end_of_warmup_and_ends_near_zero() -> None:
    epochs, steps, warmup = 5, 4, 1.0  # 20 steps; rising for the first 4
    lrs = _lrs("onecycle", epochs, steps, warmup)
    assert max(lrs) == pytest.approx(LR, rel=1e-9)
    assert lrs.index(max(lrs)) == 3  # the last warm-up step
    assert lrs[0] == pytest.approx(LR / 25, rel=1e-9)  # OneCycleLR's div_factor
    assert all(a < b for a, b in itertools.pairwise(lrs[:4]))  # rising
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:]))  # then falling
    # OneCycleLR's final rate is max_lr / div_factor / final_div_factor = LR / 25 / 1e4.
    assert lrs[-1] == pytest.approx(LR / 25 / 1e4, rel=1e-6)
    assert lrs[-1] < LR / 1e4


def test_onecycle_without_warmup_rises_for_30_percent() -> None:
    lrs = _lrs("onecycle", 10, 10, 0.0)
    assert lrs.index(max(lrs)) == 29  # pct_start 0.3 of 100 steps
    assert max(lrs) == pytest.approx(LR, rel=1e-9)


def test_constant_is_none_without_warmup_and_flat_after_warmup() -> None:
    assert build_scheduler("constant", _optimizer(), 3, 10, 0.0) is None
    lrs = _lrs("constant", 3, 2, 1.0)
    assert lrs == pytest.approx([0.05, 0.1, 0.1, 0.1, 0.1, 0.1], rel=1e-9)


@pytest.mark.parametrize(
    ("name", "epochs", "warmup", "match"),
    [
        ("linear", 3, 0.0, "unknown schedule 'linear'"),
        ("cosine", 3, 3.0, "warmup_epochs"),
        ("onecycle", 3, 5.0, "warmup_epochs"),
        ("constant", 3, -1.0, "warmup_epochs"),
    ],
)
def test_bad_schedules_raise(name: str, epochs: int, warmup: float, match: str) -> None:
    with pytest.raises(MetastasisError, match=match):
        build_scheduler(name, _optimizer(), epochs, 10, warmup)


def test_onecycle_warmup_of_one_step_is_widened_to_two() -> None:
    # OneCycleLR divides by the length of its rise: a 1-step rise would be 0 / 0.
    lrs = _lrs("onecycle", 2, 10, 0.1)
    assert lrs.index(max(lrs)) == 1 and max(lrs) == pytest.approx(LR)
