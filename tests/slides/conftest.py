"""Synthetic whole slides for the slide tests: mosaics of synthetic patches written as
pyramidal tiled TIFFs (tifffile) with resolution tags, and tiny real models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from metastasis.checkpoint import Bundle, save_checkpoint, state_dict_cpu
from metastasis.data import synthetic
from metastasis.models import create_model
from metastasis.transforms.presets import PCAM_MPP, Preprocessing

PATCH = 96
GLASS = 240


def mosaic(
    rows: int, cols: int, tissue: np.ndarray, tumour: np.ndarray, seed: int = 0
) -> np.ndarray:
    """A rows x cols grid of 96 px cells at the model's resolution: glass, normal patches where
    ``tissue``, tumour (label 1) patches where ``tumour``."""
    rng = np.random.default_rng(seed)
    img = rng.integers(GLASS - 4, GLASS + 4, (rows * PATCH, cols * PATCH, 3)).astype(np.uint8)
    images, labels = synthetic.make_patches(max(64, 3 * int(tissue.sum())), seed=seed)
    pos, neg = images[labels == 1], images[labels == 0]
    ip = ineg = 0
    for r in range(rows):
        for c in range(cols):
            cell = (slice(r * PATCH, (r + 1) * PATCH), slice(c * PATCH, (c + 1) * PATCH))
            if tumour[r, c]:
                img[cell] = pos[ip % len(pos)]
                ip += 1
            elif tissue[r, c]:
                img[cell] = neg[ineg % len(neg)]
                ineg += 1
    return img


def write_pyramid(
    path: Path,
    image: np.ndarray,
    mpp0: float,
    levels: int = 3,
    compression: str | None = "zlib",
    tile: int = 128,
    resolution: bool = True,
) -> Path:
    """A tiled pyramid (each level half the last) as successive TIFF pages, as OpenSlide's
    generic TIFF and tifffile both read it; resolution in pixels per centimetre."""
    with tifffile.TiffWriter(path) as tw:
        level = image
        for k in range(levels):
            kw = {}
            if resolution:
                kw = {"resolution": (1e4 / (mpp0 * 2**k),) * 2, "resolutionunit": "CENTIMETER"}
            tw.write(level, tile=(tile, tile), compression=compression, photometric="rgb",
                     subfiletype=1 if k else 0, **kw)  # fmt: skip
            h, w = level.shape[:2]
            if min(h, w) // 2 < tile:
                break
            level = np.asarray(Image.fromarray(level).resize((w // 2, h // 2), Image.BOX))
    return path


def slide_at_level0(model_res: np.ndarray, factor: int) -> np.ndarray:
    """The model-resolution image enlarged ``factor`` times (level 0 is finer than the model)."""
    return model_res.repeat(factor, 0).repeat(factor, 1)


def random_bundle(arch: str = "baseline-cnn", seed: int = 0, threshold: float = 0.5) -> Bundle:
    torch.manual_seed(seed)
    model = create_model(arch)
    return Bundle(arch, {}, state_dict_cpu(model), Preprocessing(mpp=PCAM_MPP), threshold)


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint.pt", random_bundle())


@pytest.fixture(scope="session")
def blob_layout() -> tuple[np.ndarray, np.ndarray]:
    """8 x 10 cells: tissue in a band, a 3 x 3 tumour blob at rows 2-4, cols 3-5."""
    tissue = np.zeros((8, 10), bool)
    tissue[1:7, 1:9] = True
    tumour = np.zeros_like(tissue)
    tumour[2:5, 3:6] = True
    return tissue, tumour


@pytest.fixture(scope="session")
def blob_image(blob_layout: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The blob slide at the model's resolution (= its level 1)."""
    tissue, tumour = blob_layout
    return mosaic(*tissue.shape, tissue, tumour, seed=1)


@pytest.fixture(scope="session")
def blob_slide(tmp_path_factory: pytest.TempPathFactory, blob_image: np.ndarray) -> Path:
    """Level 0 at half the model's mpp (0.486 um/px), 3 levels, lossless (zlib) tiles."""
    img = slide_at_level0(blob_image, 2)
    return write_pyramid(tmp_path_factory.mktemp("slides") / "blob.tif", img, PCAM_MPP / 2)
