"""Tissue detection on a thumbnail: Otsu on saturation, small holes and specks removed.

Glass is white or grey (low saturation) and H&E tissue is pink and purple (high saturation),
so a threshold on the HSV saturation separates them; Otsu chooses it per slide unless
``tissue_threshold`` (0-1) is given. The chosen threshold is clipped to ``OTSU_RANGE`` so that
an all-glass slide (whose Otsu split is noise) or an all-tissue slide (split between stains)
keeps a sensible mask. Near-black pixels (scanner borders, no-data areas) are never tissue.
Saturation is smoothed first (Gaussian, sigma 1 thumbnail pixel) so that nuclei and pale
cytoplasm of one tissue region stay together. Specks up to ``min_area_px`` thumbnail pixels
are removed and holes up to four times that are filled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from metastasis.errors import DataError
from metastasis.slides.reader import SlideReader, read_scaled

OTSU_RANGE = (0.05, 0.15)  # automatic thresholds are clipped to this saturation range
DARK = 0.15  # pixels with HSV value below this are never tissue
THUMB_MAX_SIDE = 4096
THUMB_BLOCK = 512  # thumbnail pixels per block read
MAX_BAD_FRACTION = 0.5  # above this share of undecodable thumbnail pixels: a damaged slide


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
    return Thumbnail(pixels, mpp, level, mpp / mpp0, bad)


def saturation(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSV saturation and value (0-1) of a uint8 RGB image."""
    x = rgb.astype(np.float32) / 255.0
    hi, lo = x.max(axis=-1), x.min(axis=-1)
    sat = np.where(hi > 0, (hi - lo) / np.maximum(hi, 1e-6), 0.0)
    return sat.astype(np.float32), hi


def tissue_mask(
    rgb: np.ndarray,
    threshold: float | None = None,
    min_area_px: int = 16,
    bad: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Boolean tissue mask of a thumbnail and the saturation threshold used."""
    from scipy.ndimage import gaussian_filter
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_holes, remove_small_objects

    sat, value = saturation(rgb)
    sat = gaussian_filter(sat, 1.0)
    usable = value >= DARK
    if bad is not None:
        usable &= ~bad
    if threshold is None:
        values = sat[usable]
        otsu = float(threshold_otsu(values)) if values.size and np.ptp(values) > 0 else 1.0
        threshold = float(np.clip(otsu, *OTSU_RANGE))
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
