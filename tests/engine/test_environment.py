"""engine.environment: loader workers chosen for the device."""

from __future__ import annotations

import os

import pytest

from metastasis.engine.environment import eval_batch_size, loader_workers


def test_cpu_runs_load_in_the_main_process_and_gpus_get_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert loader_workers("cpu") == 0
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert loader_workers("cuda") == 4
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert loader_workers("cuda") == 1  # one core stays with the main process
    assert loader_workers("cuda", 0) == 0 and loader_workers("cpu", 3) == 3  # asked for


def test_negative_worker_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        loader_workers("cpu", -1)


def test_validation_batches_are_small_on_a_cpu_and_large_on_a_gpu() -> None:
    assert eval_batch_size("cpu") == 32
    assert eval_batch_size("cuda") == 256 and eval_batch_size("mps") == 256
    assert eval_batch_size("cpu", 100) == 100 and eval_batch_size("cuda", 8) == 8  # asked for
    with pytest.raises(ValueError, match="eval_batch_size must be >= 1"):
        eval_batch_size("cpu", 0)
