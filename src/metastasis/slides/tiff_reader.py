"""The tifffile reader: TIFF levels decoded tile by tile, without OpenSlide.

Tiled or stripped, pyramidal (SubIFDs or reduced-resolution pages) and OME-TIFF. Only the
tiles (or strips) a region touches are read and decoded, through a small LRU cache; a tile
that fails to decode is reported in the region's ``bad`` mask instead of stopping the slide.
A file whose tiles run past its end (truncated) is refused in one line.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from metastasis.errors import DataError
from metastasis.slides.reader import BACKGROUND, Region, SlideReader, _first, _plausible, _positive


class TiffReader(SlideReader):
    """Tiled or stripped TIFF levels read segment by segment with tifffile (an LRU of tiles)."""

    name = "tifffile"
    CACHE_TILES = 64

    def __init__(self, path: Path, mpp: float | None) -> None:
        import tifffile

        try:
            with _quiet("tifffile"):  # its own log lines would repeat our one line
                self._tif = tifffile.TiffFile(path)
                series = self._tif.series[0]
                levels = [lv.keyframe for lv in series.levels]
        except Exception as exc:  # TiffFileError, struct errors, ValueError...
            raise DataError(f"{path}: not a readable TIFF ({_first(exc)})") from None
        try:
            pages = [self._rgb_page(p, path) for p in levels]
            levels = [p for p in pages if p is not None]
            if not levels:
                raise DataError(f"{path}: no RGB level (8-bit, 3 or 4 samples)")
            dims = [(int(p.imagewidth), int(p.imagelength)) for p in levels]
            file_mpp = _tiff_mpp(self._tif, levels[0])
            size = self._tif.filehandle.size
            for i, p in enumerate(levels):
                ends = [o + c for o, c in zip(p.dataoffsets, p.databytecounts)]
                if ends and max(ends) > size:
                    raise DataError(
                        f"{path}: truncated: level {i}'s tiles run past the end of the file "
                        f"({max(ends)} > {size} bytes)"
                    )
        except DataError:
            self._tif.close()
            raise
        self._pages = levels
        self._cache: OrderedDict[tuple[int, int], np.ndarray | None] = OrderedDict()
        super().__init__(path, dims, mpp or file_mpp)

    @staticmethod
    def _rgb_page(page: Any, path: Path) -> Any:
        if page.dtype != np.uint8 or page.samplesperpixel not in (3, 4) or page.imagedepth > 1:
            return None
        if page.planarconfig != 1:  # separate planes: not in slides
            raise DataError(f"{path}: planar (separate) RGB TIFF levels are not supported")
        return page

    def _segment(self, level: int, index: int) -> np.ndarray | None:
        """Decoded tile/strip ``index`` of ``level`` (H x W x 3), or None if it is broken."""
        key = (level, index)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        page = self._pages[level]
        fh = self._tif.filehandle
        tile: np.ndarray | None
        try:
            offset, count = page.dataoffsets[index], page.databytecounts[index]
            if count == 0 or offset == 0:
                raise ValueError("missing tile")
            fh.seek(offset)
            data = fh.read(count)
            if len(data) != count:
                raise ValueError("truncated file")
            seg, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
            tile = None if seg is None else np.asarray(seg)[0, :, :, :3]
        except Exception:  # any codec error: the tile is broken, the slide goes on
            tile = None
        self._cache[key] = tile
        if len(self._cache) > self.CACHE_TILES:
            self._cache.popitem(last=False)
        return tile

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> Region:
        page = self._pages[level]
        width = int(page.imagewidth)
        if page.is_tiled:
            tw, th = int(page.tilewidth), int(page.tilelength)
        else:
            tw, th = width, int(page.rowsperstrip or page.imagelength)
        across = -(-width // tw)
        out = np.empty((h, w, 3), np.uint8)
        bad: np.ndarray | None = None
        for ty in range(y // th, (y + h - 1) // th + 1):
            for tx in range(x // tw, (x + w - 1) // tw + 1):
                tile = self._segment(level, ty * across + tx)
                sy0, sx0 = max(y, ty * th), max(x, tx * tw)
                sy1, sx1 = min(y + h, (ty + 1) * th), min(x + w, (tx + 1) * tw)
                dst = (slice(sy0 - y, sy1 - y), slice(sx0 - x, sx1 - x))
                part = None
                if tile is not None:
                    part = tile[sy0 - ty * th : sy1 - ty * th, sx0 - tx * tw : sx1 - tx * tw]
                if part is None or part.shape[:2] != (sy1 - sy0, sx1 - sx0):
                    out[dst] = BACKGROUND
                    if bad is None:
                        bad = np.zeros((h, w), bool)
                    bad[dst] = True
                else:
                    out[dst] = part
        return Region(out, bad)

    def close(self) -> None:
        self._tif.close()


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Silence a library's logger for a moment (its messages become our one-line error)."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(before)


def _tiff_mpp(tif: Any, page: Any) -> float | None:
    """Level-0 microns per pixel from OME metadata, an Aperio description or resolution tags."""
    if tif.is_ome and tif.ome_metadata:
        m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
        u = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
        factor = {"nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}.get(u.group(1), 1.0) if u else 1.0
        if m:
            return _plausible(_positive(m.group(1)), factor)
    m = re.search(r"MPP\s*=\s*([0-9.eE+-]+)", str(page.description or ""))
    if m:
        return _plausible(_positive(m.group(1)), 1.0)
    tags = page.tags
    if "XResolution" not in tags or "ResolutionUnit" not in tags:
        return None
    num, den = tags["XResolution"].value
    per_micron = {2: 25_400.0, 3: 10_000.0}.get(
        int(tags["ResolutionUnit"].value)
    )  # inch, centimetre
    if per_micron is None or not num or not den:
        return None
    return _plausible(per_micron * den / num, 1.0)
