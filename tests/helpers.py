"""Small helpers for tests that write their own files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from metastasis.data import synthetic


def write_image(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    img.save(path)
    return path


def patches(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return synthetic.make_patches(n, seed=seed)


def tiny_batches(n: int, batch: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` random 8 x 8 uint8 NHWC patches in batches, labelled by their mean brightness."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 8, 8, 3), dtype=torch.uint8, generator=g)
    y = (x.float().mean((1, 2, 3)) > 127.5).long()
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


def to_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1]."""
    return x.permute(0, 3, 1, 2).float() / 255.0


def tiny_linear_model() -> nn.Module:
    """One logit per 8 x 8 patch from a seeded linear layer."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 3, 1), nn.Flatten(0))


def model_families() -> list[str]:
    """The registered models the export and Grad-CAM tests go through: every family once.
    ``resnet34`` and ``resnet50`` are timm ResNets like ``resnet18`` (the same wrapper and the
    same operations, only deeper, and 15-18 s each to export or explain on 2 cores);
    ``tests/models/test_models.py`` still builds and trains every registered name."""
    from metastasis.models import list_models

    return [name for name in list_models() if name not in {"resnet34", "resnet50"}]
