"""Slide readers: one small interface over OpenSlide, tifffile and PIL, reading regions lazily.

``open_slide(path, mpp=None, reader="auto")`` returns a ``SlideReader``: the pyramid's level
sizes and downsamples, microns per pixel (from the file's metadata, or ``mpp`` to override it)
and ``read_region(level, x, y, w, h)``, which decodes only the tiles that the region touches.
Nothing ever holds a whole level.

* ``openslide`` (openslide-python + the openslide-bin wheel): SVS, NDPI, MRXS, SCN, BIF,
  generic tiled TIFF and the rest of what OpenSlide reads.
* ``tifffile``: tiled or stripped TIFF, pyramidal (SubIFDs or reduced-resolution pages) and
  OME-TIFF, without OpenSlide; the only tiles decoded are those a region touches, and a tile
  that fails to decode is reported in the region's ``bad`` mask instead of stopping the slide.
* ``image`` (PIL): plain PNG / JPEG / small TIFF images, up to ``MAX_IMAGE_PIXELS``.

``auto`` picks tifffile for ``.tif``/``.tiff`` (and OpenSlide if tifffile cannot read it), PIL
for PNG/JPEG and OpenSlide for everything else. Every problem with a file is a ``DataError``
with one line naming the file.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metastasis.errors import DataError

log = logging.getLogger(__name__)

READERS = ("auto", "openslide", "tifffile", "image")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
TIFF_SUFFIXES = {".tif", ".tiff", ".btf", ".tf8"}
SLIDE_SUFFIXES = {".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide"}
MAX_SIDE = 1 << 20  # 1,048,576 px: larger level sides are refused as absurd
MAX_IMAGE_PIXELS = 20_000 * 20_000  # plain images are decoded whole; beyond this: use a TIFF
MAX_MPP = 50.0  # a resolution tag coarser than this (e.g. 72 dpi) is a screen default, not a scan
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
        _check_dimensions(path, dimensions)
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


def _check_dimensions(path: Path, dims: list[tuple[int, int]]) -> None:
    if not dims:
        raise DataError(f"{path}: no image levels")
    for i, (w, h) in enumerate(dims):
        if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
            raise DataError(f"{path}: level {i} has absurd dimensions {w} x {h} px")
    if any(w > dims[0][0] or h > dims[0][1] for w, h in dims):
        raise DataError(f"{path}: a reduced level is larger than level 0 ({dims})")


# ----------------------------------------------------------------------------- OpenSlide


class OpenSlideReader(SlideReader):
    name = "openslide"

    def __init__(self, path: Path, mpp: float | None) -> None:
        import openslide

        self._openslide = openslide
        try:
            self._slide = openslide.OpenSlide(str(path))
        except Exception as exc:  # OpenSlideUnsupportedFormatError, OpenSlideError, OSError
            raise DataError(f"{path}: not a slide OpenSlide can read ({_first(exc)})") from None
        props = self._slide.properties
        file_mpp = _positive(props.get(openslide.PROPERTY_NAME_MPP_X))
        super().__init__(path, list(self._slide.level_dimensions), mpp or file_mpp)
        self.vendor = props.get(openslide.PROPERTY_NAME_VENDOR, "")

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> Region:
        d = self.downsamples[level]
        try:
            rgba = np.asarray(self._slide.read_region((round(x * d), round(y * d)), level, (w, h)))
        except Exception as exc:  # OpenSlide leaves the handle unusable after an error
            log.warning("%s: region at level %d (%d, %d) unreadable: %s", self.path, level,
                        x, y, _first(exc))  # fmt: skip
            self._reopen()
            return Region(np.full((h, w, 3), BACKGROUND, np.uint8), np.ones((h, w), bool))
        rgb = rgba[..., :3].copy()
        rgb[rgba[..., 3] == 0] = BACKGROUND  # transparent = no data: background
        return Region(rgb)

    def _reopen(self) -> None:
        with contextlib.suppress(Exception):
            self._slide.close()
        self._slide = self._openslide.OpenSlide(str(self.path))

    def close(self) -> None:
        self._slide.close()


# ----------------------------------------------------------------------------- tifffile


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


def _plausible(value: float | None, factor: float) -> float | None:
    if value is None:
        return None
    mpp = value * factor
    return mpp if 0 < mpp < MAX_MPP else None


def _positive(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


# ----------------------------------------------------------------------------- PIL


class ImageReader(SlideReader):
    """A plain image, decoded once (small images only): one level."""

    name = "image"

    def __init__(self, path: Path, mpp: float | None) -> None:
        from PIL import Image

        try:
            with Image.open(path) as im:
                if im.width * im.height > MAX_IMAGE_PIXELS:
                    raise DataError(
                        f"{path}: {im.width} x {im.height} px is too large for a plain image; "
                        "write it as a tiled pyramidal TIFF"
                    )
                dpi = im.info.get("dpi")
                self._pixels = np.asarray(im.convert("RGB"))
        except DataError:
            raise
        except Exception as exc:  # UnidentifiedImageError, OSError (truncated), ...
            raise DataError(f"{path}: not a readable image ({_first(exc)})") from None
        file_mpp = _plausible(25_400.0 / float(dpi[0]), 1.0) if dpi and dpi[0] else None
        h, w = self._pixels.shape[:2]
        super().__init__(path, [(w, h)], mpp or file_mpp)

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> Region:
        return Region(self._pixels[y : y + h, x : x + w])


# ----------------------------------------------------------------------------- opening


def open_slide(path: str | Path, mpp: float | None = None, reader: str = "auto") -> SlideReader:
    """Open ``path`` with ``reader`` (``READERS``); ``mpp`` overrides the file's resolution.

    Raises ``DataError`` (one line) for a missing file, a file that is not a slide, absurd
    level sizes, or a slide with no resolution and no ``mpp``.
    """
    p = Path(path)
    if reader not in READERS:
        raise DataError(f"unknown reader {reader!r}; known: {', '.join(READERS)}")
    if mpp is not None and not (0 < mpp < MAX_MPP):
        raise DataError(f"--mpp {mpp} is not a plausible resolution (0 < mpp < {MAX_MPP:g})")
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    suffix = p.suffix.lower()
    kind = reader
    if kind == "auto":
        kind = (
            "image" if suffix in IMAGE_SUFFIXES
            else "tifffile" if suffix in TIFF_SUFFIXES
            else "openslide"
        )  # fmt: skip
    slide: SlideReader
    if kind == "image":
        slide = ImageReader(p, mpp)
    elif kind == "tifffile":
        try:
            slide = TiffReader(p, mpp)
        except DataError as tiff_error:
            if reader != "auto" or not _has_openslide():
                raise
            try:
                slide = OpenSlideReader(p, mpp)
            except DataError:
                raise tiff_error from None
    else:
        if not _has_openslide():
            raise DataError(
                f"{p}: reading this format needs OpenSlide: pip install 'metastasis[wsi]'"
            )
        slide = OpenSlideReader(p, mpp)
    if slide.mpp is None:
        slide.close()
        raise DataError(f"{p}: the file records no resolution (microns per pixel); give --mpp")
    return slide


def _has_openslide() -> bool:
    try:
        import openslide  # noqa: F401
    except Exception:  # ImportError, or OSError when the library is missing
        return False
    return True


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def read_scaled(
    slide: SlideReader, level: int, x: float, y: float, w: float, h: float, out_w: int, out_h: int
) -> Region:
    """The level region ``[x, x+w) x [y, y+h)`` (float level pixels) resampled to
    ``out_w x out_h`` pixels (PIL, antialiased bilinear; exact copy when the sizes agree)."""
    from PIL import Image

    if w == out_w and h == out_h and float(x).is_integer() and float(y).is_integer():
        return slide.read_region(level, int(x), int(y), out_w, out_h)
    ix, iy = math.floor(x), math.floor(y)
    iw, ih = math.ceil(x + w) - ix + 1, math.ceil(y + h) - iy + 1
    region = slide.read_region(level, ix, iy, iw, ih)
    box = (x - ix, y - iy, x - ix + w, y - iy + h)
    pixels = np.asarray(
        Image.fromarray(region.pixels).resize((out_w, out_h), Image.Resampling.BILINEAR, box)
    )
    bad = None
    if region.bad is not None:
        small = Image.fromarray(region.bad.astype(np.uint8) * 255)
        bad = np.asarray(small.resize((out_w, out_h), Image.Resampling.BOX, box)) > 0
    return Region(pixels, bad)
