"""engine.environment: loader workers chosen for the device."""

from __future__ import annotations

import os

import pytest

from metastasis.engine.environment import loader_workers


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
