"""Tissue detection on a thumbnail: a threshold on saturation, small holes and specks removed.

Glass is white or grey (low saturation) and H&E tissue is pink and purple (high saturation),
so a threshold on the HSV saturation separates them. Per slide (unless ``tissue_threshold``,
0-1, is given) the threshold is put where the glass ends: the lowest-saturation peak of the
histogram of bright pixels is the glass; its spread is measured on its low side (pure glass
noise, which tissue never reaches) and the threshold is the peak plus ``GLASS_SIGMAS`` of that
spread. Otsu, used before, splits two classes by variance, and tissue's saturation spreads
far wider than glass's: on a mosaic of real PCam patches Otsu chose 0.19 (clipped to 0.15) and
dropped a quarter of the tissue (fat, loose stroma, pale patches); the glass there peaks at
0.024 with a spread of 0.006. The threshold is clipped to ``THRESHOLD_RANGE`` so that an
all-glass slide (whose histogram is noise) or an all-tissue slide (no glass peak) keeps a
sensible mask. Near-black pixels (scanner borders, no-data areas) are never tissue.
Saturation is smoothed first (Gaussian, sigma 1 thumbnail pixel) so that nuclei and pale
cytoplasm of one tissue region stay together. Specks up to ``min_area_px`` thumbnail pixels
are removed and holes up to four times that are filled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from metastasis.errors import DataError
from metastasis.slides.readers import SlideReader, greyscale_error, read_scaled

THRESHOLD_RANGE = (0.05, 0.15)  # automatic thresholds are clipped to this saturation range
GLASS_SIGMAS = 4.0  # the threshold: the glass peak plus this many of its spreads
BRIGHT = 0.8  # glass is brighter than this (HSV value); the glass peak is sought among these
DARK = 0.15  # pixels with HSV value below this are never tissue
THUMB_MAX_SIDE = 4096
THUMB_BLOCK = 512  # thumbnail pixels per block read
MAX_BAD_FRACTION = 0.5  # above this share of undecodable thumbnail pixels: a damaged slide
COLOUR_MIN = 2  # channel spread a greyscale image decoded through JPEG's YCbCr can reach
MIN_COLOUR_PIXELS = 16  # fewer coloured thumbnail pixels than this: a greyscale slide


@dataclass
class Thumbnail:
    pixels: np.ndarray  # H x W x 3 uint8
    mpp: float  # microns per thumbnail pixel
    level: int  # the level it was read from
    downsample: float  # level-0 pixels per thumbnail pixel
    bad: np.ndarray | None = None  # undecodable pixels


def read_thumbnail(slide: SlideReader, target_mpp: float) -> Thumbnail:
    """The slide at about ``target_mpp`` (coarser if the side would pass ``THUMB_MAX_SIDE``),
    read block by block from the coarsest level that is at least as fine."""
    mpp0 = slide.level_mpp(0)
    w0, h0 = slide.dimensions[0]
    mpp = max(target_mpp, max(w0, h0) * mpp0 / THUMB_MAX_SIDE, mpp0)
    fine = [lv for lv in range(slide.level_count) if slide.level_mpp(lv) <= mpp * 1.001]
    level = max(fine, key=slide.level_mpp) if fine else 0
    f = mpp / slide.level_mpp(level)  # level pixels per thumbnail pixel
    lw, lh = slide.dimensions[level]
    tw, th = max(1, math.floor(lw / f)), max(1, math.floor(lh / f))
    pixels = np.empty((th, tw, 3), np.uint8)
    bad: np.ndarray | None = None
    for by in range(0, th, THUMB_BLOCK):
        for bx in range(0, tw, THUMB_BLOCK):
            bw, bh = min(THUMB_BLOCK, tw - bx), min(THUMB_BLOCK, th - by)
            region = read_scaled(slide, level, bx * f, by * f, bw * f, bh * f, bw, bh)
            pixels[by : by + bh, bx : bx + bw] = region.pixels
            if region.bad is not None:
                if bad is None:
                    bad = np.zeros((th, tw), bool)
                bad[by : by + bh, bx : bx + bw] = region.bad
    if bad is not None and bad.mean() > MAX_BAD_FRACTION:
        raise DataError(
            f"{slide.path}: damaged or truncated: {bad.mean():.0%} of level {level} "
            "cannot be decoded"
        )
    if not has_colour(pixels, bad):  # a greyscale slide would be "no tissue": a false negative
        raise DataError(greyscale_error(slide.path))
    return Thumbnail(pixels, mpp, level, mpp / mpp0, bad)


def has_colour(rgb: np.ndarray, bad: np.ndarray | None = None) -> bool:
    """Whether some pixels have colour (max - min channel above ``COLOUR_MIN``), as every
    RGB scan has (tissue, and the glass's own noise); a greyscale slide converted to RGB by a
    reader has none, and its tissue cannot be told from glass by stain."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    chroma = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    coloured = chroma > COLOUR_MIN
    if bad is not None:
        coloured &= ~bad
    return int(np.count_nonzero(coloured)) >= MIN_COLOUR_PIXELS


def saturation(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSV saturation and value (0-1) of a uint8 RGB image."""
    # channel by channel on uint8: numpy's reductions over a last axis of 3 are slow
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hi = np.maximum(np.maximum(r, g), b)
    lo = np.minimum(np.minimum(r, g), b)
    sat = (hi - lo).astype(np.float32) / np.maximum(hi, 1).astype(np.float32)  # black: 0 / 1
    return sat, hi.astype(np.float32) / 255.0


def tissue_mask(
    rgb: np.ndarray,
    threshold: float | None = None,
    min_area_px: int = 16,
    bad: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Boolean tissue mask of a thumbnail and the saturation threshold used."""
    from scipy.ndimage import gaussian_filter
    from skimage.morphology import remove_small_holes, remove_small_objects

    sat, value = saturation(rgb)
    sat = gaussian_filter(sat, 1.0)
    usable = value >= DARK
    if bad is not None:
        usable &= ~bad
    if threshold is None:
        threshold = float(np.clip(glass_end(sat[usable & (value >= BRIGHT)]), *THRESHOLD_RANGE))
    elif not 0.0 <= threshold <= 1.0:
        raise DataError(f"--tissue-threshold must be between 0 and 1, got {threshold}")
    mask = (sat > threshold) & usable
    if min_area_px > 0 and mask.any():
        try:  # scikit-image >= 0.26: remove sizes <= max_size
            mask = remove_small_objects(mask, max_size=min_area_px)
            mask = remove_small_holes(mask, max_size=4 * min_area_px)
        except TypeError:  # older: remove sizes < min_size / area_threshold
            mask = remove_small_objects(mask, min_size=min_area_px + 1)
            mask = remove_small_holes(mask, area_threshold=4 * min_area_px + 1)
    return mask, threshold


def glass_end(bright_sat: np.ndarray) -> float:
    """The saturation where the glass ends: the lowest peak of the histogram (one at least a
    fifth as high as the highest) plus ``GLASS_SIGMAS`` spreads measured below it. Without
    bright pixels (no glass), 0: the caller's lower bound applies."""
    from scipy.ndimage import gaussian_filter1d

    if bright_sat.size < 64:
        return 0.0
    counts, edges = np.histogram(bright_sat, bins=512, range=(0.0, 1.0))
    smooth = gaussian_filter1d(counts.astype(np.float64), 2.0)
    inner = smooth[1:-1]
    is_peak = (inner >= smooth[:-2]) & (inner >= smooth[2:]) & (inner >= 0.2 * smooth.max())
    peak_bin = int(np.flatnonzero(is_peak)[0]) + 1 if is_peak.any() else int(smooth.argmax())
    peak = float(edges[peak_bin] + edges[peak_bin + 1]) / 2
    below = bright_sat[bright_sat <= peak]
    spread = float(np.sqrt(np.mean((below - peak) ** 2))) if below.size else 0.0
    return peak + GLASS_SIGMAS * spread
