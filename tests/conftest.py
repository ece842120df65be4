"""Shared fixtures: tiny synthetic data sets written into temporary folders.

No test needs the real data sets; the cache always goes to a temporary folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metastasis.config import TrainConfig
from metastasis.data import synthetic
from metastasis.engine.trainer import RunResult
from metastasis.training import train


@pytest.fixture(autouse=True)
def isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("METASTASIS_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ (160 patches) and valid/ (64 patches), class folders of PNG files."""
    return synthetic.write_demo_dataset(
        tmp_path_factory.mktemp("demo") / "demo", n_train=160, n_valid=64, seed=0
    )


@pytest.fixture(scope="session")
def kaggle_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.write_kaggle_dataset(
        tmp_path_factory.mktemp("kaggle") / "kaggle", n_train=40, n_test=12, seed=3
    )


@pytest.fixture(scope="session")
def trained_run(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """One real epoch of the seed's CNN on the tiny demo set, with its report (``train``)."""
    base = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(
        data=str(demo_data / "train"),
        val_data=str(demo_data / "valid"),
        epochs=1,
        batch_size=32,
        seed=0,
        out=str(base / "run"),
        cache_dir=str(base / "cache"),
    )
    return train(cfg, progress=False)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for every test that opens an HTML report (tests/browser.py)."""
    from tests.browser import launch

    with launch() as browser:
        yield browser
