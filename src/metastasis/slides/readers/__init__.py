"""Slide readers: one small interface over OpenSlide, tifffile and PIL, reading regions lazily.

``open_slide(path, mpp=None, reader="auto")`` returns a ``SlideReader``: the pyramid's level
sizes and downsamples, microns per pixel (from the file's metadata, or ``mpp`` to override it)
and ``read_region(level, x, y, w, h)``, which decodes only the tiles that the region touches.
Nothing ever holds a whole level. One module per backend, each importing its library only
when a slide is opened:

* ``openslide`` (openslide-python + the openslide-bin wheel): SVS, NDPI, MRXS, SCN, BIF,
  generic tiled TIFF and the rest of what OpenSlide reads. A region it fails to read (a
  broken JPEG tile) is read again piece by piece on the level's stored tile grid, and only the
  pieces that fail are reported in the region's ``bad`` mask.
* ``tifffile``: tiled or stripped TIFF, pyramidal (SubIFDs or reduced-resolution pages) and
  OME-TIFF, without OpenSlide; the only tiles decoded are those a region touches, and a tile
  that fails to decode is reported in the region's ``bad`` mask instead of stopping the slide.
* ``image`` (PIL): plain PNG / JPEG / small TIFF images, up to ``MAX_IMAGE_PIXELS``.

``base`` holds what they share (``Region``, ``SlideReader``, limits, suffixes) and
``resample`` the bounded ``read_scaled``. ``auto`` picks tifffile for ``.tif``/``.tiff`` (and
OpenSlide if tifffile cannot read it), PIL for PNG/JPEG and OpenSlide for everything else.
Every problem with a file is a ``DataError`` with one line naming the file.
"""

from __future__ import annotations

from pathlib import Path

from metastasis.errors import DataError
from metastasis.io import regular_file
from metastasis.slides.readers.base import (
    BACKGROUND,
    IMAGE_SUFFIXES,
    MAX_IMAGE_PIXELS,
    MAX_SIDE,
    READERS,
    SLIDE_SUFFIXES,
    TIFF_SUFFIXES,
    Region,
    SlideReader,
    check_dimensions,
    greyscale_error,
    slide_files,
)
from metastasis.slides.readers.image import ImageReader
from metastasis.slides.readers.openslide import OpenSlideReader, has_openslide
from metastasis.slides.readers.resample import MAX_READ_SIDE, read_scaled
from metastasis.slides.readers.tifffile import TiffReader, TiffUnsupported
from metastasis.slides.resolution import check_mpp_option

__all__ = [
    "BACKGROUND",
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_PIXELS",
    "MAX_READ_SIDE",
    "MAX_SIDE",
    "READERS",
    "SLIDE_SUFFIXES",
    "TIFF_SUFFIXES",
    "ImageReader",
    "OpenSlideReader",
    "Region",
    "SlideReader",
    "TiffReader",
    "TiffUnsupported",
    "check_dimensions",
    "greyscale_error",
    "open_slide",
    "read_scaled",
    "slide_files",
]


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
        try:
            slide = TiffReader(p, mpp)
        except TiffUnsupported as tiff_error:  # damaged, greyscale...: tifffile's word is final
            if reader != "auto" or not has_openslide():
                raise
            try:
                slide = OpenSlideReader(p, mpp)
            except DataError:
                raise tiff_error from None
    else:
        if not has_openslide():
            raise DataError(
                f"{p}: reading this format needs OpenSlide: pip install 'metastasis[wsi]'"
            )
        slide = OpenSlideReader(p, mpp)
    if slide.mpp is None:
        slide.close()
        raise DataError(f"{p}: the file records no resolution (microns per pixel); give --mpp")
    return slide
