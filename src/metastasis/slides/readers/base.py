"""Slide readers: one small interface over OpenSlide, tifffile and PIL, reading regions lazily.

``open_slide(path, mpp=None, reader="auto")`` returns a ``SlideReader``: the pyramid's level
sizes and downsamples, microns per pixel (from the file's metadata, or ``mpp`` to override it)
and ``read_region(level, x, y, w, h)``, which decodes only the tiles that the region touches.
Nothing ever holds a whole level.

* ``openslide`` (openslide-python + the openslide-bin wheel): SVS, NDPI, MRXS, SCN, BIF,
  generic tiled TIFF and the rest of what OpenSlide reads. A region it fails to read (a
  broken JPEG tile) is read again piece by piece on the level's stored tile grid, and only the
  pieces that fail are reported in the region's ``bad`` mask.
* ``tifffile`` (``tiff_reader``): tiled or stripped TIFF, pyramidal (SubIFDs or
  reduced-resolution pages) and OME-TIFF, without OpenSlide; the only tiles decoded are those
  a region touches, and a tile that fails to decode is reported in the region's ``bad`` mask
  instead of stopping the slide.
* ``image`` (PIL): plain PNG / JPEG / small TIFF images, up to ``MAX_IMAGE_PIXELS``.

``auto`` picks tifffile for ``.tif``/``.tiff`` (and OpenSlide if tifffile cannot read it), PIL
for PNG/JPEG and OpenSlide for everything else. Every problem with a file is a ``DataError``
with one line naming the file.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metastasis.errors import DataError
from metastasis.io import regular_file
from metastasis.slides.resolution import check_mpp_option, image_mpp, parse_mpp

log = logging.getLogger(__name__)

READERS = ("auto", "openslide", "tifffile", "image")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
TIFF_SUFFIXES = {".tif", ".tiff", ".btf", ".tf8"}
SLIDE_SUFFIXES = {".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide"}
MAX_SIDE = 1 << 20  # 1,048,576 px: larger level sides are refused as absurd
MAX_READ_SIDE = 4096  # a read never holds more than about this squared level pixels
MAX_IMAGE_PIXELS = 20_000 * 20_000  # plain images are decoded whole; beyond this: use a TIFF
BACKGROUND = 255  # value of pixels outside the slide
FALLBACK_PIECE = 256  # px: the pieces a failed OpenSlide region is retried in, if tiles unknown
MIN_PIECE = 64  # px: smaller stored tiles are retried a few at a time (fewer calls)


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
                    x, y, w, h, _first(error), pieces, tw, th, failed)  # fmt: skip
        return Region(out, bad if failed else None)

    def _reopen(self) -> None:
        with contextlib.suppress(Exception):
            self._slide.close()
        self._slide = self._openslide.OpenSlide(str(self.path))

    def close(self) -> None:
        self._slide.close()


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
                info = dict(im.info)
                self._pixels = np.asarray(im.convert("RGB"))
        except DataError:
            raise
        except Exception as exc:  # UnidentifiedImageError, OSError (truncated), ...
            raise DataError(f"{path}: not a readable image ({_first(exc)})") from None
        h, w = self._pixels.shape[:2]
        super().__init__(path, [(w, h)], mpp if mpp is not None else image_mpp(path, info))

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
    check_mpp_option(mpp)
    regular_file(p)  # a FIFO would block, a link loop or a folder is no slide
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
        from metastasis.slides.tiff_reader import TiffReader, TiffUnsupported

        try:
            slide = TiffReader(p, mpp)
        except TiffUnsupported as tiff_error:  # damaged, greyscale...: tifffile's word is final
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


def slide_files(path: Path) -> list[Path]:
    """What a slide is made of: its file, and a folder beside it named like it (MIRAX keeps
    its tiles in ``scan/`` beside ``scan.mrxs``; any such folder is treated as the slide's)."""
    stems = {path.stem, path.name.split(".")[0]} - {"", "."}
    return [path, *(path.with_name(s) for s in sorted(stems) if path.with_name(s).is_dir())]


def greyscale_error(path: Path) -> str:
    """The one line for a slide without colour, whichever reader found it."""
    return (
        f"{path}: no colour in any pixel (a greyscale slide, or nothing stained on it): "
        "tissue is found by its H&E colours, so it cannot be analysed"
    )


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
    ``out_w x out_h`` pixels (PIL, antialiased bilinear; exact copy when the sizes agree).

    Memory is bounded whatever the slide declares: a region that would need more than
    ``MAX_READ_SIDE`` squared level pixels at once is read and resampled in pieces."""
    sx, sy = w / out_w, h / out_h
    step_x = max(1, min(out_w, math.floor(MAX_READ_SIDE / max(sx, 1.0))))
    step_y = max(1, min(out_h, math.floor(MAX_READ_SIDE / max(sy, 1.0))))
    if step_x == out_w and step_y == out_h:
        return _read_scaled_once(slide, level, x, y, w, h, out_w, out_h)
    pixels = np.empty((out_h, out_w, 3), np.uint8)
    bad: np.ndarray | None = None
    for oy in range(0, out_h, step_y):
        for ox in range(0, out_w, step_x):
            pw, ph = min(step_x, out_w - ox), min(step_y, out_h - oy)
            part = _read_scaled_once(slide, level, x + ox * sx, y + oy * sy, pw * sx, ph * sy,
                                     pw, ph)  # fmt: skip
            pixels[oy : oy + ph, ox : ox + pw] = part.pixels
            if part.bad is not None:
                if bad is None:
                    bad = np.zeros((out_h, out_w), bool)
                bad[oy : oy + ph, ox : ox + pw] = part.bad
    return Region(pixels, bad)


def _read_scaled_once(
    slide: SlideReader, level: int, x: float, y: float, w: float, h: float, out_w: int, out_h: int
) -> Region:
    from PIL import Image

    if w == out_w and h == out_h and float(x).is_integer() and float(y).is_integer():
        return slide.read_region(level, int(x), int(y), out_w, out_h)
    ix, iy = math.floor(x), math.floor(y)
    iw, ih = math.ceil(x + w) - ix + 1, math.ceil(y + h) - iy + 1
    if iw * ih > 4 * MAX_READ_SIDE**2:  # one output pixel from millions: not a scan
        raise DataError(
            f"{slide.path}: one pixel at the model's resolution would be resampled from "
            f"{w / out_w:.0f} x {h / out_h:.0f} px of level {level}; refusing"
        )
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
