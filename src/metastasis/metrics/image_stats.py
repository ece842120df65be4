"""Image statistics of uint8 RGB patches (pure numpy: arrays in, numbers out; no I/O, no plots).

Every function takes a stack of patches ``(N, H, W, 3)`` uint8 (one patch ``(H, W, 3)`` where
said) and is exact: the EDA report feeds it chunks of a memory-mapped cache and adds up.

* colour: :func:`luminance` (grey level, ITU-R BT.601 as Pillow/OpenCV), :func:`rgb_to_hsv`;
* per patch: :func:`patch_statistics` (channel means/spreads, background and dark fractions,
  focus = variance of the Laplacian, the same for the central 32x32 label region and the ring
  around it); :class:`PixelHistograms` for exact pixel-level distributions per class;
* near-duplicates: :func:`perceptual_hashes` (pHash, bit-for-bit ``imagehash.phash``, vectorised)
  and :func:`near_duplicate_groups` (all pairs within a Hamming distance, by multi-index hashing);
* over patches: :func:`typicality` (distance from the class average) and :func:`pca_2d`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# Named thresholds (recorded in eda.json by the report).
BACKGROUND_MIN_GREY = 220.0  # a background (near-white, glass) pixel: grey level >= this ...
BACKGROUND_MAX_SATURATION = 0.15  # ... and HSV saturation <= this
DARK_MAX_GREY = 100.0  # a dark (nucleus-like, haematoxylin) pixel: grey level < this
BLANK_MAX_STD = 3.0  # a blank patch: grey-level standard deviation < this (uniform colour)
BACKGROUND_ONLY_MIN_FRACTION = 0.95  # a background-only patch: >= this fraction is background
BLURRY_MAX_LAPLACIAN_VAR = 50.0  # a blurry patch: variance of the Laplacian < this ...
BLURRY_MIN_TISSUE_FRACTION = 0.5  # ... in a patch that is mostly tissue (not blank)
NEAR_DUPLICATE_MAX_DISTANCE = 4  # pHash bits that may differ between near-duplicates

CENTRE = slice(32, 64)  # the label region of a 96x96 patch (PCam: label = tumour in here)
CHANNELS = ("red", "green", "blue", "hue", "saturation", "value", "grey")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def luminance(images: np.ndarray) -> np.ndarray:
    """Grey level in [0, 255] (float32): 0.299 R + 0.587 G + 0.114 B."""
    rgb = images.astype(np.float32)
    return rgb[..., 0] * _LUMA[0] + rgb[..., 1] * _LUMA[1] + rgb[..., 2] * _LUMA[2]


def rgb_to_hsv(images: np.ndarray) -> np.ndarray:
    """HSV in [0, 1] (float32, same shape), as ``skimage.color.rgb2hsv``; hue 0 where grey."""
    rgb = images.astype(np.float32) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=-1)
    delta = v - rgb.min(axis=-1)
    s = np.where(v > 0, delta / np.where(v > 0, v, 1), 0)
    d = np.where(delta > 0, delta, 1)
    h = np.where(b == v, 4 + (r - g) / d, np.where(g == v, 2 + (b - r) / d, (g - b) / d))
    h = np.where(delta > 0, (h / 6) % 1.0, 0)
    return np.stack([h, s, v], axis=-1).astype(np.float32)


def laplacian(grey: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian of ``(..., H, W)`` grey images on the interior ``(..., H-2, W-2)``."""
    g = grey.astype(np.float32)
    c = g[..., 1:-1, 1:-1]
    return g[..., :-2, 1:-1] + g[..., 2:, 1:-1] + g[..., 1:-1, :-2] + g[..., 1:-1, 2:] - 4 * c


def laplacian_variance(grey: np.ndarray) -> np.ndarray:
    """Focus per image: variance of the Laplacian (low = blurred or featureless)."""
    return laplacian(grey).var(axis=(-2, -1), dtype=np.float64)


def background_mask(grey: np.ndarray, saturation: np.ndarray) -> np.ndarray:
    """Near-white pixels: bright and almost colourless."""
    return (grey >= BACKGROUND_MIN_GREY) & (saturation <= BACKGROUND_MAX_SATURATION)


def centre_mask(height: int, width: int) -> np.ndarray:
    """True on the central 32x32 (scaled for other sizes: the middle third)."""
    m = np.zeros((height, width), bool)
    m[height // 3 : height - height // 3, width // 3 : width - width // 3] = True
    return m


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return x[..., mask].mean(axis=-1, dtype=np.float64)


def _masked_var(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return x[..., mask].var(axis=-1, dtype=np.float64)


def patch_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-patch statistics of ``(N, H, W, 3)`` uint8 patches: one float64 array per name.

    Colour: ``{red,green,blue,saturation,value,grey}_{mean,std}``; ``background_fraction``,
    ``dark_fraction``, ``laplacian_var``; and for the label region vs the ring around it
    ``{centre,ring}_{grey,saturation,background,dark,laplacian_var}``.
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    n, height, width, _ = images.shape
    out: dict[str, np.ndarray] = {}
    flat = images.reshape(n, -1, 3)
    for k, name in enumerate(("red", "green", "blue")):
        channel = flat[..., k].astype(np.float32)
        out[f"{name}_mean"] = channel.mean(axis=1, dtype=np.float64)
        out[f"{name}_std"] = channel.std(axis=1, dtype=np.float64)
    hsv = rgb_to_hsv(images)
    grey = luminance(images)
    sat = hsv[..., 1]
    for name, x in (("saturation", sat), ("value", hsv[..., 2]), ("grey", grey)):
        out[f"{name}_mean"] = x.mean(axis=(1, 2), dtype=np.float64)
        out[f"{name}_std"] = x.std(axis=(1, 2), dtype=np.float64)
    bg = background_mask(grey, sat)
    dark = grey < DARK_MAX_GREY
    out["background_fraction"] = bg.mean(axis=(1, 2))
    out["dark_fraction"] = dark.mean(axis=(1, 2))
    lap = laplacian(grey)
    out["laplacian_var"] = lap.var(axis=(1, 2), dtype=np.float64)
    centre = centre_mask(height, width)
    inner = centre[1:-1, 1:-1]  # the Laplacian is defined on the interior
    for region, m, lm in (("centre", centre, inner), ("ring", ~centre, ~inner)):
        out[f"{region}_grey"] = _masked_mean(grey, m)
        out[f"{region}_saturation"] = _masked_mean(sat, m)
        out[f"{region}_background"] = _masked_mean(bg, m)
        out[f"{region}_dark"] = _masked_mean(dark, m)
        out[f"{region}_laplacian_var"] = _masked_var(lap, lm)
    return out


def quality_flags(stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Boolean flags per patch from :func:`patch_statistics`: blank, background_only, blurry.

    Blank patches are not also counted as background-only or blurry, and background-only ones
    not as blurry, so each problem patch is shown once, under its most basic problem.
    """
    blank = stats["grey_std"] < BLANK_MAX_STD
    background = (stats["background_fraction"] >= BACKGROUND_ONLY_MIN_FRACTION) & ~blank
    blurry = (
        (stats["laplacian_var"] < BLURRY_MAX_LAPLACIAN_VAR)
        & (stats["background_fraction"] <= 1 - BLURRY_MIN_TISSUE_FRACTION)
        & ~blank
        & ~background
    )
    return {"blank": blank, "background_only": background, "blurry": blurry}


@dataclass
class PixelHistograms:
    """Exact pixel-level histograms (256 bins per channel of :data:`CHANNELS`), added chunk by
    chunk. Red, green, blue, value and grey are binned by their integer level (value exactly,
    grey rounded); hue and saturation in 256 equal bins of [0, 1]. Hue counts only pixels with
    a colour (max > min); the others have no hue."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros((len(CHANNELS), 256), np.int64))

    def add(self, images: np.ndarray) -> None:
        if images.size == 0:
            return
        flat = images.reshape(-1, 3)
        hsv = rgb_to_hsv(flat)
        grey = np.rint(luminance(flat)).astype(np.int64)
        chromatic = flat.max(axis=1) > flat.min(axis=1)
        hue_bins = np.minimum((hsv[chromatic, 0] * 256).astype(np.int64), 255)
        sat_bins = np.minimum((hsv[:, 1] * 256).astype(np.int64), 255)
        columns = (flat[:, 0], flat[:, 1], flat[:, 2], hue_bins, sat_bins, flat.max(axis=1), grey)
        for k, col in enumerate(columns):
            self.counts[k] += np.bincount(col, minlength=256)[:256]

    def __iadd__(self, other: PixelHistograms) -> PixelHistograms:
        self.counts += other.counts
        return self

    @property
    def n_pixels(self) -> int:
        return int(self.counts[0].sum())

    def bin_centres(self, channel: str) -> np.ndarray:
        """Bin centres on the channel's scale: levels 0-255, or [0, 1] for hue and saturation."""
        if channel in ("hue", "saturation"):
            return (np.arange(256) + 0.5) / 256
        return np.arange(256, dtype=np.float64)

    def summary(self) -> dict[str, dict[str, float]]:
        """Mean and standard deviation per channel; hue as circular mean and spread in degrees."""
        out: dict[str, dict[str, float]] = {}
        for k, channel in enumerate(CHANNELS):
            w = self.counts[k].astype(np.float64)
            total = w.sum()
            if total == 0:
                out[channel] = {"mean": float("nan"), "std": float("nan")}
                continue
            x = self.bin_centres(channel)
            if channel == "hue":
                angle = 2 * np.pi * x
                c, s = (w * np.cos(angle)).sum() / total, (w * np.sin(angle)).sum() / total
                length = min(float(np.hypot(c, s)), 1.0)
                mean_deg = float(np.degrees(np.arctan2(s, c)) % 360)
                spread = float(np.degrees(np.sqrt(-2 * np.log(length)))) if length > 0 else 180.0
                out[channel] = {"mean": mean_deg, "std": spread}
                continue
            mean = float((w * x).sum() / total)
            var = float((w * (x - mean) ** 2).sum() / total)
            out[channel] = {"mean": mean, "std": float(np.sqrt(var))}
        return out


# ----------------------------------------------------------------------------- perceptual hash

_HASH_IN = 32  # imagehash.phash: grey image resized to 32x32, low 8x8 of its 2-D DCT
_HASH_SIZE = 8


def _pil_lanczos(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's LANCZOS (antialias) resampling matrix ``(out, in)`` in its 8-bit fixed point."""
    scale = in_size / out_size
    support = 3.0 * max(scale, 1.0)
    ss = 1.0 / max(scale, 1.0)
    out = np.zeros((out_size, in_size))
    for xx in range(out_size):
        centre = (xx + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), in_size)
        x = (np.arange(lo, hi) - centre + 0.5) * ss
        w = np.where(np.abs(x) < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0)
        w /= w.sum()
        out[xx, lo:hi] = np.where(w < 0, np.trunc(w * 2**22 - 0.5), np.trunc(w * 2**22 + 0.5))
    return out


@lru_cache(maxsize=4)
def _hash_matrices(size: int) -> tuple[np.ndarray, np.ndarray]:
    resize = _pil_lanczos(size, _HASH_IN)
    n = np.arange(_HASH_IN)
    dct = 2 * np.cos(np.pi * np.arange(_HASH_SIZE)[:, None] * (2 * n[None, :] + 1) / (2 * _HASH_IN))
    return resize, dct


def _resample_rows(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One Pillow 8-bit resampling pass along the last axis: fixed point, rounded, clipped."""
    acc = x.reshape(-1, x.shape[-1]) @ weights.T + 2**21
    out = np.clip(np.floor(acc / 2**22), 0, 255)
    return out.reshape(*x.shape[:-1], weights.shape[0])


def perceptual_hashes(images: np.ndarray) -> np.ndarray:
    """pHash of each ``(N, H, W, 3)`` uint8 patch as uint64, equal to ``imagehash.phash`` (grey
    as Pillow's "L", Lanczos resize to 32x32, 2-D DCT-II, low 8x8 above their median; bit 63 is
    the top-left coefficient), computed for the whole stack with matrix products."""
    n, height, width, _ = images.shape
    if height != width:
        raise ValueError(f"square patches expected, got {height}x{width}")
    if n == 0:
        return np.zeros(0, np.uint64)
    resize, dct = _hash_matrices(height)
    rgb = images.astype(np.int32)
    grey = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
    small = _resample_rows(grey.astype(np.float64), resize)  # horizontal pass, then vertical
    small = _resample_rows(np.ascontiguousarray(small.transpose(0, 2, 1)), resize)
    # small is transposed (n, x, y): the DCT of its transpose is the transpose of the DCT
    coeffs = np.einsum("ki,nji,lj->nkl", dct, small, dct, optimize=True).reshape(n, -1)
    bits = coeffs > np.median(coeffs, axis=1, keepdims=True)
    weights = np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64)
    return (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


def hamming_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between uint64 hashes (elementwise)."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def close_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """Every pair ``(i, j)``, i < j, of distinct hashes at Hamming distance <= ``max_distance``
    (pass unique hashes: equal ones are found too, but a large group of them costs its square).

    Pigeonhole: split the 64 bits into ``max_distance + 1`` blocks; two hashes within the
    distance agree exactly on at least one block, so only hashes sharing a block are compared.
    """
    h = np.asarray(hashes, dtype=np.uint64)
    found = [np.zeros((0, 2), np.int64)]
    for bits in np.array_split(np.arange(64), max_distance + 1):
        keys = (h >> np.uint64(bits[0])) & np.uint64((1 << len(bits)) - 1)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        idx, step = np.arange(len(h)), 1
        while len(idx):  # compare each hash with the next `step` ones sharing its block
            idx = idx[idx + step < len(h)]
            idx = idx[sorted_keys[idx] == sorted_keys[idx + step]]
            a, b = order[idx], order[idx + step]
            close = hamming_distance(h[a], h[b]) <= max_distance
            found.append(np.stack([a[close], b[close]], axis=1))
            step += 1
    pairs = np.sort(np.concatenate(found), axis=1)
    return np.unique(pairs, axis=0) if len(pairs) else pairs


def _members(labels: np.ndarray, k: int) -> list[np.ndarray]:
    """Indices of each value 0..k-1 of ``labels``."""
    order = np.argsort(labels, kind="stable")
    return np.split(order, np.cumsum(np.bincount(labels, minlength=k))[:-1])


def near_duplicate_groups(hashes: np.ndarray, max_distance: int) -> list[np.ndarray]:
    """Indices into ``hashes`` grouped by chains of hashes within ``max_distance`` bits of each
    other (equal hashes included), groups of two or more, largest first."""
    uniq, inverse = np.unique(np.asarray(hashes, dtype=np.uint64), return_inverse=True)
    k = len(uniq)
    if k == 0:
        return []
    pairs = close_pairs(uniq, max_distance)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(k, k))
    _, component = connected_components(graph, directed=False)
    per_patch = component[inverse.reshape(-1)]
    groups = [g for g in _members(per_patch, int(component.max()) + 1) if len(g) > 1]
    return sorted(groups, key=lambda g: (-len(g), int(g[0])))


# ----------------------------------------------------------------------------- across patches


def standardise(features: np.ndarray) -> np.ndarray:
    """Columns to zero mean and unit variance (constant columns to zero)."""
    x = np.asarray(features, dtype=np.float64)
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def typicality(features: np.ndarray) -> np.ndarray:
    """Distance of each row from the average row, in standard deviations: the root mean square
    of its z-scores. Small = typical, large = atypical (compute it within one class)."""
    z = standardise(features)
    return np.sqrt((z**2).mean(axis=1)) if z.size else np.zeros(len(z))


def pca_2d(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal components of the standardised features: ``(coords (N, 2), explained variance
    ratio (2,), loadings (2, F))``; signs fixed so the largest loading is positive."""
    z = standardise(features)
    _, s, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
    vt = vt[:2] * np.sign(vt[:2, [np.argmax(np.abs(v)) for v in vt[:2]]].diagonal())[:, None]
    var = s**2
    ratio = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
    return z @ vt.T, ratio, vt
