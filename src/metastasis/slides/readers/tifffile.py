"""The tifffile reader: TIFF levels decoded tile by tile, without OpenSlide.

Tiled or stripped, pyramidal (SubIFDs or reduced-resolution pages) and OME-TIFF. Only the
tiles (or strips) a region touches are read and decoded, through a small LRU cache; a tile
that fails to decode is reported in the region's ``bad`` mask instead of stopping the slide.
A file whose tiles run past its end (truncated) is refused in one line. ``TiffUnsupported``
says tifffile cannot read the file at all (``open_slide`` may then try OpenSlide); the
``tifffile`` package is imported only when a slide is opened.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from metastasis.errors import DataError, first_line
from metastasis.slides.readers.base import (
    BACKGROUND,
    MAX_IMAGE_PIXELS,
    Region,
    SlideReader,
    check_dimensions,
    greyscale_error,
)
from metastasis.slides.resolution import tiff_mpp

CACHE_BYTES = 256 * 2**20
MAX_SEGMENT_PIXELS = MAX_IMAGE_PIXELS  # a larger tile or strip is never decoded at once


class TiffUnsupported(DataError):
    """tifffile cannot read this file at all (``open_slide`` may try OpenSlide instead)."""


class TiffReader(SlideReader):
    """Tiled or stripped TIFF levels read segment by segment with tifffile (an LRU of tiles)."""

    name = "tifffile"
    CACHE_TILES = 64  # decoded tiles kept, and at most CACHE_BYTES of them

    def __init__(self, path: Path, mpp: float | None) -> None:
        import tifffile

        try:
            with _quiet("tifffile"):  # its own log lines would repeat our one line
                self._tif = tifffile.TiffFile(path)
                series = self._tif.series[0]
                levels = [lv.keyframe for lv in series.levels]
        except Exception as exc:  # TiffFileError, struct errors, ValueError...
            reason = first_line(exc, with_type=True)
            raise TiffUnsupported(f"{path}: not a readable TIFF ({reason})") from None
        try:
            levels = _rgb_levels(path, levels)
            dims = [(int(p.imagewidth), int(p.imagelength)) for p in levels]
            check_dimensions(path, dims)
            size = self._tif.filehandle.size
            for i, page in enumerate(levels):
                _check_level(path, i, page, size)
            if mpp is None:  # --mpp overrides the metadata without reading it
                mpp = tiff_mpp(path, self._tif, levels[0])
        except DataError:
            self._tif.close()
            raise
        self._pages = levels
        self._cache: OrderedDict[tuple[int, int], np.ndarray | None] = OrderedDict()
        self._cached_bytes = 0
        super().__init__(path, dims, mpp)

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
        self._cached_bytes += 0 if tile is None else tile.nbytes
        while len(self._cache) > 1 and (
            len(self._cache) > self.CACHE_TILES or self._cached_bytes > CACHE_BYTES
        ):
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= 0 if old is None else old.nbytes
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


def _rgb_levels(path: Path, levels: list[Any]) -> list[Any]:
    """The 8-bit RGB levels; a greyscale slide, or one with no 8-bit RGB level, is refused."""
    rgb = []
    for page in levels:
        if page.planarconfig != 1 and page.samplesperpixel > 1:  # separate planes
            raise TiffUnsupported(f"{path}: planar (separate) RGB TIFF levels are not supported")
        if page.dtype == np.uint8 and page.samplesperpixel in (3, 4) and page.imagedepth == 1:
            rgb.append(page)
    if rgb:
        return rgb
    first = levels[0]
    if first.samplesperpixel in (1, 2) and int(first.photometric) in (0, 1):  # MINISWHITE/BLACK
        raise DataError(greyscale_error(path))
    raise DataError(
        f"{path}: no 8-bit RGB level (level 0: {first.dtype}, {first.samplesperpixel} samples)"
    )


def _check_level(path: Path, i: int, page: Any, size: int) -> None:
    """The level's tile (or strip) table fits its declared size and the file's length, and no
    tile or strip is too large to decode at once: a file's declarations decide no allocation."""
    w, h = int(page.imagewidth), int(page.imagelength)
    if page.is_tiled:
        tw, th = int(page.tilewidth), int(page.tilelength)
        need = -(-w // max(tw, 1)) * -(-h // max(th, 1))
    else:
        tw, th = w, int(page.rowsperstrip or h)
        need = -(-h // max(min(th, h), 1))
    stored = len(page.dataoffsets)
    if min(tw, th) < 1 or stored < need:
        raise DataError(
            f"{path}: damaged: level {i} declares {w} x {h} px in {need:,} tiles or strips, "
            f"but its table holds {stored:,}"
        )
    if tw * min(th, h) > MAX_SEGMENT_PIXELS:
        raise DataError(
            f"{path}: level {i} stores {tw} x {min(th, h)} px in one tile or strip, too large "
            "to decode in bounded memory; write it as a tiled TIFF"
        )
    ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts)]
    if ends and max(ends) > size:
        raise DataError(
            f"{path}: truncated: level {i}'s tiles run past the end of the file "
            f"({max(ends)} > {size} bytes)"
        )
