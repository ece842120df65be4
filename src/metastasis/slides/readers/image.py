"""The plain-image reader (PIL): PNG / JPEG / BMP / small TIFF images, decoded once, as a
slide of one level, up to ``MAX_IMAGE_PIXELS`` (a larger scan belongs in a tiled TIFF)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metastasis.errors import DataError, first_line
from metastasis.slides.readers.base import MAX_IMAGE_PIXELS, Region, SlideReader
from metastasis.slides.resolution import image_mpp


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
            reason = first_line(exc, with_type=True)
            raise DataError(f"{path}: not a readable image ({reason})") from None
        h, w = self._pixels.shape[:2]
        super().__init__(path, [(w, h)], mpp if mpp is not None else image_mpp(path, info))

    def _read(self, level: int, x: int, y: int, w: int, h: int) -> Region:
        return Region(self._pixels[y : y + h, x : x + w])
