"""Deep Zoom tiles of a slide: the pyramid geometry, the ``.dzi`` description, and tiles cut by
OpenSlide's ``openslide.deepzoom.DeepZoomGenerator`` (when OpenSlide opens the slide) or from
the pyramid through the project's own readers (``metastasis.slides.readers``: tifffile).

Deep Zoom level ``L`` of ``N`` is the slide scaled by ``2 ** (N - 1 - L)`` (level ``N - 1`` is
level 0 of the slide, level 0 is one pixel), cut into ``TILE`` px tiles with ``OVERLAP`` px
shared with each neighbour; OpenSlide's generator and :class:`DeepZoom` agree on every size.
Work per tile is bounded: a tile is read from the finest slide level at most as fine as its Deep
Zoom level (at most ``TILE + 2`` px times less than 2 on a side), and where the slide has no
level coarse enough (a slide without a pyramid, seen whole) it is resampled from the run's
``thumbnail.png`` instead of reading a whole level.
"""

from __future__ import annotations

import io
import math
import threading
from pathlib import Path
from typing import Any

from metastasis.errors import DataError, first_line
from metastasis.slides.readers import SlideReader, open_slide, read_scaled
from metastasis.slides.readers.openslide import has_openslide

TILE = 254  # px: 254 + 2 px of overlap = 256, as OpenSlide's examples serve
OVERLAP = 1
FORMAT = "jpeg"
QUALITY = 80
MAX_SOURCE_SIDE = 4096  # a tile is never read from more slide pixels than this on a side
MAX_THUMBNAIL_PIXELS = 8192 * 8192
BACKENDS = ("auto", "openslide", "reader")


class TileUnavailable(LookupError):
    """A level or tile that does not exist, or cannot be made in bounded work (a 404)."""


class DeepZoom:
    """Deep Zoom geometry of a ``width x height`` image (level-0 pixels)."""

    def __init__(self, width: int, height: int, tile: int = TILE, overlap: int = OVERLAP) -> None:
        self.width, self.height, self.tile, self.overlap = width, height, tile, overlap
        dims = [(width, height)]
        while dims[-1][0] > 1 or dims[-1][1] > 1:  # as DeepZoomGenerator: halve, round up
            w, h = dims[-1]
            dims.append((max(1, math.ceil(w / 2)), max(1, math.ceil(h / 2))))
        self.level_dimensions = dims[::-1]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    def factor(self, level: int) -> int:
        """Level-0 pixels per pixel of Deep Zoom ``level``."""
        return int(2 ** (self.level_count - 1 - level))

    def level_tiles(self, level: int) -> tuple[int, int]:
        w, h = self.level_dimensions[level]
        return math.ceil(w / self.tile), math.ceil(h / self.tile)

    def tile_box(self, level: int, col: int, row: int) -> tuple[int, int, int, int]:
        """``(x, y, w, h)`` of a tile in its level's pixels (overlap included); raises
        ``TileUnavailable`` for a level or tile outside the pyramid."""
        if not 0 <= level < self.level_count:
            raise TileUnavailable(f"no Deep Zoom level {level} (0-{self.level_count - 1})")
        cols, rows = self.level_tiles(level)
        if not (0 <= col < cols and 0 <= row < rows):
            raise TileUnavailable(f"no tile {col}_{row} at level {level} ({cols} x {rows} tiles)")
        w, h = self.level_dimensions[level]
        x, sw = self._span(col, cols, w)
        y, sh = self._span(row, rows, h)
        return x, y, sw, sh

    def _span(self, t: int, count: int, limit: int) -> tuple[int, int]:
        before = self.overlap if t > 0 else 0
        after = self.overlap if t < count - 1 else 0
        return t * self.tile - before, min(self.tile, limit - self.tile * t) + before + after

    def dzi(self) -> str:
        """The ``.dzi`` XML that OpenSeadragon opens."""
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
            f'Format="{FORMAT}" Overlap="{self.overlap}" TileSize="{self.tile}">'
            f'<Size Width="{self.width}" Height="{self.height}"/></Image>\n'
        )


class TileSource:
    """Tiles of one slide as JPEG bytes; subclasses cut them (``_cut``)."""

    backend = "none"

    def __init__(self, dz: DeepZoom, thumbnail: Path | None) -> None:
        self.dz = dz
        self._thumbnail_path = thumbnail
        self._thumbnail: Any = None
        self._lock = threading.Lock()

    def jpeg(self, level: int, col: int, row: int) -> bytes:
        box = self.dz.tile_box(level, col, row)
        image = self._cut(level, col, row, box)
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="JPEG", quality=QUALITY)
        return buf.getvalue()

    def _cut(self, level: int, col: int, row: int, box: tuple[int, int, int, int]) -> Any:
        raise NotImplementedError

    def from_thumbnail(self, level: int, box: tuple[int, int, int, int]) -> Any:
        """The tile resampled from the run's thumbnail (coarse levels of a slide whose own
        pyramid has nothing coarse enough)."""
        from PIL import Image

        with self._lock:
            if self._thumbnail is None:
                self._thumbnail = _load_thumbnail(self._thumbnail_path)
        thumb = self._thumbnail
        f = self.dz.factor(level)
        sx, sy = thumb.width / self.dz.width, thumb.height / self.dz.height
        x, y, w, h = box
        region = (x * f * sx, y * f * sy, (x + w) * f * sx, (y + h) * f * sy)
        return thumb.resize((w, h), Image.Resampling.BILINEAR, box=region)

    def source_side(self, level: int, box: tuple[int, int, int, int], downsample: float) -> float:
        """Slide pixels a tile of ``level`` is read from, on its longer side."""
        return max(box[2], box[3]) * self.dz.factor(level) / downsample

    def close(self) -> None:
        """Release the slide."""


class OpenSlideTiles(TileSource):
    """Tiles from OpenSlide's ``DeepZoomGenerator`` (the whole slide, no bounds cropping)."""

    backend = "openslide"

    def __init__(self, slide: Any, thumbnail: Path | None) -> None:
        from openslide.deepzoom import DeepZoomGenerator

        w, h = slide.dimensions
        super().__init__(DeepZoom(w, h), thumbnail)
        self._slide = slide
        self._generator = DeepZoomGenerator(slide, TILE, OVERLAP, limit_bounds=False)
        if tuple(self._generator.level_dimensions) != tuple(self.dz.level_dimensions):
            raise AssertionError("Deep Zoom geometry differs from OpenSlide's")

    def _cut(self, level: int, col: int, row: int, box: tuple[int, int, int, int]) -> Any:
        f = self.dz.factor(level)
        best = self._slide.get_best_level_for_downsample(f)
        if self.source_side(level, box, self._slide.level_downsamples[best]) > MAX_SOURCE_SIDE:
            return self.from_thumbnail(level, box)
        return self._generator.get_tile(level, (col, row))

    def close(self) -> None:
        self._slide.close()


class ReaderTiles(TileSource):
    """Tiles cut from the pyramid through a project reader (one at a time: readers keep one
    file handle and a tile cache)."""

    backend = "reader"

    def __init__(self, slide: SlideReader, thumbnail: Path | None) -> None:
        w, h = slide.dimensions[0]
        super().__init__(DeepZoom(w, h), thumbnail)
        self._slide = slide
        self.backend = f"reader ({slide.name})"

    def _cut(self, level: int, col: int, row: int, box: tuple[int, int, int, int]) -> Any:
        from PIL import Image

        f = self.dz.factor(level)
        downsamples = self._slide.downsamples
        best = max((i for i, d in enumerate(downsamples) if d <= f * 1.01), default=0)
        ds = downsamples[best]
        if self.source_side(level, box, ds) > MAX_SOURCE_SIDE:
            return self.from_thumbnail(level, box)
        x, y, w, h = box
        with self._lock:
            region = read_scaled(self._slide, best, x * f / ds, y * f / ds, w * f / ds,
                                 h * f / ds, w, h)  # fmt: skip
        return Image.fromarray(region.pixels)

    def close(self) -> None:
        self._slide.close()


def open_tiles(
    path: Path,
    mpp: float | None,
    thumbnail: Path | None,
    backend: str = "auto",
    analysed_by: str | None = None,
) -> TileSource:
    """Deep Zoom tiles of the slide at ``path``.

    ``backend``: ``openslide`` (OpenSlide's generator), ``reader`` (the project's readers, as
    ``open_slide`` picks them) or ``auto``: OpenSlide's generator where OpenSlide opens the
    slide, except a slide the run read with tifffile (``analysed_by``, the ``reader`` of its
    ``summary.json``), which is cut by the tifffile reader: on the benchmark's JPEG TIFF it
    costs 2.5 times less CPU per tile (``benchmarks/README.md``, issue 23)."""
    if backend not in BACKENDS:
        raise DataError(f"unknown tile backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend == "auto" and analysed_by == "tifffile":
        try:
            return ReaderTiles(open_slide(path, mpp), thumbnail)
        except DataError:
            pass  # OpenSlide may still open it
    if backend != "reader" and has_openslide():
        import openslide

        try:
            return OpenSlideTiles(openslide.OpenSlide(str(path)), thumbnail)
        except Exception as exc:  # OpenSlideUnsupportedFormatError, OpenSlideError
            if backend == "openslide":
                reason = first_line(exc, with_type=True)
                raise DataError(f"{path}: OpenSlide cannot open it ({reason})") from None
    elif backend == "openslide":
        raise DataError("OpenSlide is not installed: pip install 'metastasis[wsi]'")
    return ReaderTiles(open_slide(path, mpp), thumbnail)


def _load_thumbnail(path: Path | None) -> Any:
    from PIL import Image

    if path is None or not path.is_file():
        raise TileUnavailable("this level needs the run's thumbnail.png, which is missing")
    with Image.open(path) as im:
        if im.width * im.height > MAX_THUMBNAIL_PIXELS:
            raise TileUnavailable(f"{path.name}: {im.width} x {im.height} px, too large")
        return im.convert("RGB")
