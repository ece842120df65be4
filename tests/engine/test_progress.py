"""engine.progress: a log line per tenth of an epoch with the speed since the line before."""

from __future__ import annotations

import logging

import pytest

from metastasis.engine import progress
from metastasis.engine.progress import ThroughputLog


def test_one_line_per_tenth_with_the_speed_since_the_last(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = iter([0.0, 100.0] + [100.0 + 0.5 * k for k in range(1, 21)])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    tl = ThroughputLog(steps=20, batch_size=32)
    tl.start("epoch 2/5")  # at t = 100; then each logged step is 0.5 s after the one before
    with caplog.at_level(logging.INFO, logger="metastasis.engine.trainer"):
        for _ in range(20):
            tl.step()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10  # 20 steps: every 2nd
    assert lines[0] == "epoch 2/5: 2/20 batches (10%), 128 patches/s"  # 2 x 32 in 0.5 s
    assert lines[-1] == "epoch 2/5: 20/20 batches (100%), 128 patches/s"
    assert tl.rates == [128.0] * 10


def test_uneven_epochs_still_end_on_the_last_step_and_can_be_silent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tl = ThroughputLog(steps=7, batch_size=4, enabled=False)
    assert max(tl.marks) == 7 and len(tl.marks) == 7  # fewer steps than tenths: every step
    tl = ThroughputLog(steps=1376, batch_size=128, enabled=False)
    assert len(tl.marks) == 10 and max(tl.marks) == 1376 and min(tl.marks) == 138
    with caplog.at_level(logging.INFO, logger="metastasis.engine.trainer"):
        tl.start("epoch 1/1")
        for _ in range(1376):
            tl.step()
    assert len(tl.rates) == 10 and not caplog.records
    with pytest.raises(ValueError, match="at least 1"):
        ThroughputLog(steps=0, batch_size=4)


def test_a_short_last_batch_counts_what_it_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 0.0, 1.0, 2.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    tl = ThroughputLog(steps=2, batch_size=128, patches=200, parts=2)
    tl.start("epoch 1/1")
    tl.step()
    tl.step()  # 72 patches, not 128
    assert tl.rates == [128.0, 72.0]
