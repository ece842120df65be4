"""Small helpers for tests that write their own files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from metastasis.data import synthetic


def write_image(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    img.save(path)
    return path


def patches(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return synthetic.make_patches(n, seed=seed)
