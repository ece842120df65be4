"""The OpenSlide reader: SVS, NDPI, MRXS, SCN, BIF, generic tiled TIFF and the rest of what
OpenSlide reads (openslide-python + the openslide-bin wheel, ``metastasis[wsi]``).

A region OpenSlide fails to read (a broken JPEG tile) is read again piece by piece on the
level's stored tile grid, and only the pieces that fail are reported in the region's ``bad``
mask. The ``openslide`` package is imported only when a slide is opened.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from metastasis.errors import DataError, first_line
from metastasis.slides.readers.base import BACKGROUND, Region, SlideReader
from metastasis.slides.resolution import parse_mpp

log = logging.getLogger(__name__)

FALLBACK_PIECE = 256  # px: the pieces a failed OpenSlide region is retried in, if tiles unknown
MIN_PIECE = 64  # px: smaller stored tiles are retried a few at a time (fewer calls)


class OpenSlideReader(SlideReader):
    name = "openslide"

    def __init__(self, path: Path, mpp: float | None) -> None:
        import openslide

        self._openslide = openslide
        try:
            self._slide = openslide.OpenSlide(str(path))
        except Exception as exc:  # OpenSlideUnsupportedFormatError, OpenSlideError, OSError
            reason = first_line(exc, with_type=True)
            raise DataError(f"{path}: not a slide OpenSlide can read ({reason})") from None
        props = self._slide.properties
        if mpp is None:  # the metadata is read only when --mpp does not override it
            text = props.get(openslide.PROPERTY_NAME_MPP_X)
            mpp = None if text is None else parse_mpp(path, "OpenSlide mpp-x", text)
        super().__init__(path, list(self._slide.level_dimensions), mpp)
        self.vendor = props.get(openslide.PROPERTY_NAME_VENDOR, "")
        self._pieces = [_piece_sides(props, level) for level in range(self.level_count)]

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> Region:
        try:
            return Region(self._read_rgb(level, x, y, w, h))
        except Exception as exc:  # OpenSlide leaves the handle unusable after an error
            self._reopen()
            return self._read_by_tiles(level, x, y, w, h, exc)

    def _read_rgb(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        d = self.downsamples[level]
        rgba = np.asarray(self._slide.read_region((round(x * d), round(y * d)), level, (w, h)))
        rgb = rgba[..., :3].copy()
        rgb[rgba[..., 3] == 0] = BACKGROUND  # transparent = no data: background
        return rgb

    def _read_by_tiles(
        self, level: int, x: int, y: int, w: int, h: int, error: Exception
    ) -> Region:
        """The region again, piece by piece on the level's stored tile grid: a piece that fails
        (it touches a broken stored tile) is background and ``bad``; the others keep their pixels.
        """
        tw, th = self._pieces[level]
        out = np.full((h, w, 3), BACKGROUND, np.uint8)
        bad = np.zeros((h, w), bool)
        pieces = failed = 0
        for py in range(y - y % th, y + h, th):  # the grid starts at 0 in level pixels
            for px in range(x - x % tw, x + w, tw):
                x0, y0, x1, y1 = max(px, x), max(py, y), min(px + tw, x + w), min(py + th, y + h)
                dst = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
                pieces += 1
                try:
                    out[dst] = self._read_rgb(level, x0, y0, x1 - x0, y1 - y0)
                except Exception:
                    failed += 1
                    bad[dst] = True
                    self._reopen()
        log.warning("%s: region at level %d (%d, %d) %d x %d px unreadable (%s); read again in "
                    "%d pieces of %d x %d px: %d failed, marked as not decoded", self.path, level,
                    x, y, w, h, first_line(error, with_type=True), pieces, tw, th,
                    failed)  # fmt: skip
        return Region(out, bad if failed else None)

    def _reopen(self) -> None:
        with contextlib.suppress(Exception):
            self._slide.close()
        self._slide = self._openslide.OpenSlide(str(self.path))

    def close(self) -> None:
        self._slide.close()


def has_openslide() -> bool:
    """Whether OpenSlide can be used here (the package and its library both load)."""
    try:
        import openslide  # noqa: F401
    except Exception:  # ImportError, or OSError when the library is missing
        return False
    return True


def _piece_sides(props: Any, level: int) -> tuple[int, int]:
    """Width and height of the pieces a failed region of ``level`` is read again in: the
    level's stored tiles (OpenSlide's ``tile-width`` / ``tile-height``; ``FALLBACK_PIECE``
    where it gives none), whole multiples of them when smaller than ``MIN_PIECE``."""
    sides = []
    for key in ("width", "height"):
        try:
            tile = float(props.get(f"openslide.level[{level}].tile-{key}", "nan"))
        except (TypeError, ValueError):
            tile = math.nan
        side = int(tile) if math.isfinite(tile) and tile >= 1 else FALLBACK_PIECE
        sides.append(side * -(-MIN_PIECE // side))
    return sides[0], sides[1]
