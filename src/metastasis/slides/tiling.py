"""Where tiles are: the reading level and scale, the tile grid, tissue per tile, blocks.

Everything is laid out in *model pixels*: the slide resampled to the checkpoint's resolution
(``Preprocessing.mpp``). Tile ``(row, col)`` covers model pixels
``[col*stride, col*stride + patch) x [row*stride, row*stride + patch)``; its *cell* (what the
probability map and the regions give it) is the ``stride x stride`` square around the tile's
centre, so cells tile the plane (at stride 32 the cell is the label region, PCam's centre 32).

Tiles are read in square *blocks* of ``n x n`` tiles (``patch + stride * (n - 1)`` model
pixels): one region read and resampled per block, the tiles cut from it, or, for the fully
convolutional pass, the whole block classified at once.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from metastasis.errors import DataError
from metastasis.slides.readers import SlideReader

log = logging.getLogger(__name__)

MPP_WARN_RATIO = 2.0  # a level this many times finer or coarser than the model's: warn
MAX_TILES = 50_000_000  # the probability map of a larger grid is refused as absurd
# Model pixels per block side, about. Measured at stride 32, fully convolutional, ONNX Runtime,
# a 6,144 px JPEG TIFF (18,137 tissue tiles) on the shared 2-core CPU: blocks of 640 px 625
# tiles/s, 1,024 px 557, 448 px 490 (larger blocks recompute less overlap but leave the caches).
BLOCK_TARGET = 640


@dataclass(frozen=True)
class Geometry:
    """How one slide is read: level, scale, the tile grid (model pixels) and its origin."""

    level: int
    level_mpp: float  # microns per pixel of the level read
    model_mpp: float  # microns per pixel of the model's patches
    mpp0: float  # microns per pixel at level 0
    downsample: float  # level-0 pixels per level pixel
    patch: int  # tile side, model pixels
    stride: int  # model pixels between tiles
    rows: int
    cols: int

    @property
    def scale(self) -> float:
        """Level pixels per model pixel (> 1: the level is finer than the model and is shrunk)."""
        return self.model_mpp / self.level_mpp

    @property
    def level0_per_model(self) -> float:
        return self.model_mpp / self.mpp0

    def tile_origin_level0(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 (x, y) of tiles' top-left corners."""
        f = self.stride * self.level0_per_model
        return col * f, row * f

    def cell_bounds_level0(self, row: int, col: int) -> tuple[float, float, float, float]:
        """Level-0 (x0, y0, x1, y1) of a tile's cell (the stride square around its centre)."""
        f = self.level0_per_model
        cx = (col * self.stride + self.patch / 2) * f
        cy = (row * self.stride + self.patch / 2) * f
        half = self.stride * f / 2
        return cx - half, cy - half, cx + half, cy + half

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scale"] = self.scale
        return d


UPSAMPLE_TOLERANCE = 1.1  # a level at most this much coarser than the model may be enlarged


def choose_level(slide: SlideReader, model_mpp: float) -> int:
    """The level closest to the model's resolution from the fine side: the coarsest level at
    most 10% coarser than the model (a 40x scan's 1.0 um/px level serves a 0.972 model);
    level 0 if none is.

    Reading a finer level and shrinking keeps the detail the model was trained with; a level
    much coarser than the model would have to be enlarged (blurred)."""
    limit = model_mpp * UPSAMPLE_TOLERANCE
    fine = [lv for lv in range(slide.level_count) if slide.level_mpp(lv) <= limit]
    return max(fine, key=slide.level_mpp) if fine else 0


def make_geometry(slide: SlideReader, model_mpp: float, patch: int, stride: int) -> Geometry:
    if stride < 1:
        raise DataError(f"--stride must be >= 1 model pixel, got {stride}")
    level = choose_level(slide, model_mpp)
    level_mpp = slide.level_mpp(level)
    ratio = model_mpp / level_mpp
    if ratio > MPP_WARN_RATIO or ratio < 1 / MPP_WARN_RATIO:
        log.warning(
            "%s: the nearest level (%d, %.3f um/px) is %.1fx %s than the model's %.3f um/px; "
            "resampling",
            slide.path, level, level_mpp, ratio if ratio > 1 else 1 / ratio,
            "finer" if ratio > 1 else "coarser", model_mpp,
        )  # fmt: skip
    mpp0 = slide.level_mpp(0)
    w0, h0 = slide.dimensions[0]
    wm, hm = w0 * mpp0 / model_mpp, h0 * mpp0 / model_mpp  # slide size in model pixels
    cols = max(0, math.floor((wm - patch) / stride) + 1)
    rows = max(0, math.floor((hm - patch) / stride) + 1)
    if rows * cols > MAX_TILES:
        raise DataError(
            f"{slide.path}: {rows} x {cols} tiles at stride {stride} is too many; "
            "use a larger --stride"
        )
    return Geometry(
        level, level_mpp, model_mpp, mpp0, slide.downsamples[level], patch, stride, rows, cols
    )


def tissue_fractions(geo: Geometry, mask: np.ndarray, thumb_downsample: float) -> np.ndarray:
    """Share of each tile (rows x cols) that the thumbnail's tissue mask covers."""
    if geo.rows == 0 or geo.cols == 0:
        return np.zeros((geo.rows, geo.cols), np.float32)
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int32)  # <= 4096^2 px
    integral[1:, 1:] = mask.cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32)
    f = geo.level0_per_model / thumb_downsample  # thumbnail pixels per model pixel
    h, w = mask.shape

    def edges(n: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
        start = np.arange(n) * geo.stride * f
        lo = np.clip(np.floor(start).astype(np.int64), 0, limit)
        hi = np.clip(np.ceil(start + geo.patch * f).astype(np.int64), 0, limit)
        return lo, np.maximum(hi, np.minimum(lo + 1, limit))

    y0, y1 = edges(geo.rows, h)
    x0, x1 = edges(geo.cols, w)
    total = integral[y1][:, x1] - integral[y0][:, x1] - integral[y1][:, x0] + integral[y0][:, x0]
    area = np.outer(y1 - y0, x1 - x0).astype(np.float64)
    total = total.astype(np.float64)
    return np.divide(total, area, out=np.zeros_like(total), where=area > 0).astype(np.float32)


@dataclass(frozen=True)
class Block:
    """``n x n`` tiles from tile (row, col), read as one square of ``side`` model pixels."""

    row: int
    col: int
    n: int
    side: int


def tiles_per_block(patch: int, stride: int, target: int = BLOCK_TARGET) -> int:
    return max(1, round((target - patch) / stride) + 1)


def blocks(geo: Geometry, selected: np.ndarray, n: int) -> list[Block]:
    """The blocks holding at least one selected tile (``selected``: rows x cols bool)."""
    side = geo.patch + geo.stride * (n - 1)
    out = []
    for r in range(0, geo.rows, n):
        for c in range(0, geo.cols, n):
            if selected[r : r + n, c : c + n].any():
                out.append(Block(r, c, n, side))
    return out
