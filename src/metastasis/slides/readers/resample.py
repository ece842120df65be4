"""A slide's region at another scale: ``read_scaled`` reads a (fractional) level region and
resamples it to the pixels asked for, in bounded memory whatever the slide declares."""

from __future__ import annotations

import math

import numpy as np

from metastasis.errors import DataError
from metastasis.slides.readers.base import Region, SlideReader

MAX_READ_SIDE = 4096  # a read never holds more than about this squared level pixels


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
