"""What every slide reader shares: the ``Region`` it returns, the ``SlideReader`` interface,
the limits every file is held to, and the names slides go by.

A reader gives the pyramid's level sizes (finest first) and downsamples, the level-0
resolution, and ``read_region(level, x, y, w, h)``, which clips the request to the level,
fills the rest with ``BACKGROUND`` and asks the backend (``_read``) only for what lies inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metastasis.errors import DataError

READERS = ("auto", "openslide", "tifffile", "image")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
TIFF_SUFFIXES = {".tif", ".tiff", ".btf", ".tf8"}
SLIDE_SUFFIXES = {".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide"}
MAX_SIDE = 1 << 20  # 1,048,576 px: larger level sides are refused as absurd
MAX_IMAGE_PIXELS = 20_000 * 20_000  # plain images are decoded whole; beyond this: use a TIFF
BACKGROUND = 255  # value of pixels outside the slide


@dataclass
class Region:
    """RGB uint8 pixels of a region, and where (if anywhere) tiles failed to decode."""

    pixels: np.ndarray  # H x W x 3 uint8
    bad: np.ndarray | None = None  # H x W bool, True where a tile failed to decode

    @property
    def failed(self) -> bool:
        return self.bad is not None and bool(self.bad.any())


class SlideReader:
    """Levels (finest first), their sizes and downsamples, the level-0 mpp, lazy regions."""

    name = "base"

    def __init__(self, path: Path, dimensions: list[tuple[int, int]], mpp: float | None) -> None:
        self.path = path
        self.dimensions = dimensions  # (width, height) per level
        self.mpp = mpp  # microns per pixel at level 0
        check_dimensions(path, dimensions)
        w0, h0 = dimensions[0]
        self.downsamples = [(w0 / w + h0 / h) / 2 for w, h in dimensions]

    @property
    def level_count(self) -> int:
        return len(self.dimensions)

    def level_mpp(self, level: int) -> float:
        if self.mpp is None:
            raise DataError(f"{self.path}: no resolution known")
        return self.mpp * self.downsamples[level]

    def read_region(self, level: int, x: int, y: int, w: int, h: int) -> Region:
        """Pixels ``[y, y+h) x [x, x+w)`` of ``level`` (level coordinates); outside: white."""
        width, height = self.dimensions[level]
        out = np.full((h, w, 3), BACKGROUND, np.uint8)
        bad: np.ndarray | None = None
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        if x1 > x0 and y1 > y0:
            inner = self._read(level, x0, y0, x1 - x0, y1 - y0)
            out[y0 - y : y1 - y, x0 - x : x1 - x] = inner.pixels
            if inner.bad is not None:
                bad = np.zeros((h, w), bool)
                bad[y0 - y : y1 - y, x0 - x : x1 - x] = inner.bad
        return Region(out, bad)

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> Region:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_dimensions(path: Path, dims: list[tuple[int, int]]) -> None:
    """Refuse level sizes no slide has (a side over ``MAX_SIDE``, a reduced level larger than
    level 0), before anything is allocated for them."""
    if not dims:
        raise DataError(f"{path}: no image levels")
    for i, (w, h) in enumerate(dims):
        if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
            raise DataError(f"{path}: level {i} has absurd dimensions {w} x {h} px")
    if any(w > dims[0][0] or h > dims[0][1] for w, h in dims):
        raise DataError(f"{path}: a reduced level is larger than level 0 ({dims})")


def greyscale_error(path: Path) -> str:
    """The one line for a slide without colour, whichever reader found it."""
    return (
        f"{path}: no colour in any pixel (a greyscale slide, or nothing stained on it): "
        "tissue is found by its H&E colours, so it cannot be analysed"
    )


def slide_files(path: Path) -> list[Path]:
    """What a slide is made of: its file, and a folder beside it named like it (MIRAX keeps
    its tiles in ``scan/`` beside ``scan.mrxs``; any such folder is treated as the slide's)."""
    stems = {path.stem, path.name.split(".")[0]} - {"", "."}
    return [path, *(path.with_name(s) for s in sorted(stems) if path.with_name(s).is_dir())]
