"""Image statistics of uint8 RGB patches (pure numpy: arrays in, numbers out; no I/O, no plots).

Functions take stacks of patches ``(N, H, W, 3)`` uint8 and are exact, so the EDA report can
feed them chunks of a memory-mapped cache and add up; thresholds are named constants.

* colour: :func:`grey_levels` (Pillow's "L": ITU-R BT.601 luma); HSV as skimage's;
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
BACKGROUND_MIN_GREY = 220  # a background (near-white, glass) pixel: grey level >= this ...
BACKGROUND_MAX_SATURATION = 0.15  # ... and HSV saturation <= this
DARK_MAX_GREY = 100  # a dark (nucleus-like, haematoxylin) pixel: grey level < this
BLANK_MAX_STD = 3.0  # a blank patch: grey-level standard deviation < this (uniform colour)
BACKGROUND_ONLY_MIN_FRACTION = 0.95  # a background-only patch: >= this fraction is background
BLURRY_MAX_LAPLACIAN_VAR = 300.0  # a blurry patch: variance of the Laplacian < this ...
BLURRY_MIN_TISSUE_FRACTION = 0.5  # ... in a patch that is at least this much tissue
NEAR_DUPLICATE_MAX_DISTANCE = 4  # pHash bits that may differ between near-duplicates
HUE_MIN_SATURATION = 0.1  # the hue histogram counts pixels at least this saturated

FLAG_RULES = {
    "blank": f"grey-level standard deviation < {BLANK_MAX_STD:g} (a uniform colour)",
    "background_only": f">= {BACKGROUND_ONLY_MIN_FRACTION:.0%} of pixels background (grey >= "
    f"{BACKGROUND_MIN_GREY}, saturation <= {BACKGROUND_MAX_SATURATION:g})",
    "blurry": f"variance of the Laplacian < {BLURRY_MAX_LAPLACIAN_VAR:g} in a patch at least "
    f"{BLURRY_MIN_TISSUE_FRACTION:.0%} tissue (blurred or featureless)",
}

HISTOGRAM_CHANNELS = ("grey", "saturation", "hue")
_HUE_UNDEFINED = 256  # bin of pixels without a hue (max == min), dropped from the histogram


def thresholds() -> dict[str, float]:
    """The named thresholds above, by lower-case name (for reports)."""
    return {
        "background_min_grey": BACKGROUND_MIN_GREY,
        "background_max_saturation": BACKGROUND_MAX_SATURATION,
        "dark_max_grey": DARK_MAX_GREY,
        "blank_max_std": BLANK_MAX_STD,
        "background_only_min_fraction": BACKGROUND_ONLY_MIN_FRACTION,
        "blurry_max_laplacian_var": BLURRY_MAX_LAPLACIAN_VAR,
        "blurry_min_tissue_fraction": BLURRY_MIN_TISSUE_FRACTION,
        "near_duplicate_max_distance": NEAR_DUPLICATE_MAX_DISTANCE,
        "hue_min_saturation": HUE_MIN_SATURATION,
    }


def grey_levels(images: np.ndarray) -> np.ndarray:
    """Grey level (uint8, same shape without the channel axis) as Pillow's "L" conversion:
    ``round(0.299 R + 0.587 G + 0.114 B)`` in fixed point."""
    rgb = np.asarray(images)
    acc = rgb[..., 0] * np.uint32(19595)
    acc += rgb[..., 1] * np.uint32(38470)
    acc += rgb[..., 2] * np.uint32(7471)
    acc += np.uint32(0x8000)
    return (acc >> np.uint32(16)).astype(np.uint8)


def laplacian(grey: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian of ``(..., H, W)`` grey images on the interior ``(..., H-2, W-2)``
    (int32: exact for uint8 input)."""
    g = grey.astype(np.int32)
    c = g[..., 1:-1, 1:-1]
    return g[..., :-2, 1:-1] + g[..., 2:, 1:-1] + g[..., 1:-1, :-2] + g[..., 1:-1, 2:] - 4 * c


def laplacian_variance(grey: np.ndarray) -> np.ndarray:
    """Focus per image: variance of the Laplacian (low = blurred or featureless)."""
    return laplacian(grey).var(axis=(-2, -1), dtype=np.float64)


def centre_mask(height: int, width: int) -> np.ndarray:
    """True on the label region: the middle third (the central 32x32 of a 96x96 patch)."""
    m = np.zeros((height, width), bool)
    m[height // 3 : height - height // 3, width // 3 : width - width // 3] = True
    return m


@lru_cache(maxsize=1)
def _hue_table() -> np.ndarray:
    """Hue bin (0-255, or undefined) by ``(max channel, max - min, signed difference)``."""
    case = np.arange(3)[:, None, None]  # 0: red is max, 1: green, 2: blue (skimage's order)
    delta = np.arange(256)[None, :, None]
    diff = np.arange(-255, 256)[None, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        hue = ((2 * case + diff / np.maximum(delta, 1)) / 6) % 1.0
    bins = np.minimum((hue * 256).astype(np.int64), 255)
    return np.where(delta > 0, bins, _HUE_UNDEFINED).astype(np.int16)


class _Planes:
    """Per-pixel planes of a chunk, flattened to ``(N, H*W)`` and computed once."""

    def __init__(self, images: np.ndarray) -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
        n, self.height, self.width, _ = images.shape
        self.rgb = np.ascontiguousarray(
            images.reshape(n, self.height * self.width, 3).transpose(0, 2, 1)
        )
        r, g, b = self.rgb[:, 0], self.rgb[:, 1], self.rgb[:, 2]
        self.grey = grey_levels(self.rgb.transpose(0, 2, 1))
        self.value = np.maximum(np.maximum(r, g), b)
        self.delta = self.value - np.minimum(np.minimum(r, g), b)
        self.saturation = self.delta.astype(np.float32) / np.maximum(self.value, 1)
        self.background = (self.grey >= BACKGROUND_MIN_GREY) & (
            self.saturation <= BACKGROUND_MAX_SATURATION
        )

    def hue_bins(self) -> np.ndarray:
        r, g, b = (self.rgb[:, k].astype(np.int16) for k in range(3))
        is_b = b == self.value
        is_g = (g == self.value) & ~is_b
        diff = np.where(is_b, r - g, np.where(is_g, b - r, g - b))
        index = (is_g + 2 * is_b.astype(np.int32)) * 256 + self.delta
        index *= 511
        index += diff
        index += 255
        bins = _hue_table().reshape(-1)[index]
        bins[self.saturation < HUE_MIN_SATURATION] = _HUE_UNDEFINED
        return bins


def _std(x: np.ndarray) -> np.ndarray:
    """Standard deviation along the last axis: float32 input, centred first, summed in float64."""
    centred = x - x.mean(axis=-1, keepdims=True)
    return np.sqrt(np.square(centred).sum(axis=-1, dtype=np.float64) / x.shape[-1])


def patch_statistics(
    images: np.ndarray,
    histograms: PixelHistograms | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-patch statistics of ``(N, H, W, 3)`` uint8 patches: one float64 array per name.

    Colour: ``{red,green,blue,grey,saturation,value}_{mean,std}`` (red, green, blue and grey
    in levels 0-255; HSV saturation and value in 0-1); ``background_fraction``,
    ``dark_fraction``, ``laplacian_var``; and for the label region (centre) and the ring
    around it ``{centre,ring}_{grey,saturation,background,dark,laplacian_var}``. With
    ``histograms``, the pixels are also added to it (by ``groups``), sharing the per-pixel work.
    """
    planes = _Planes(images)
    if histograms is not None:
        histograms.add_planes(planes, groups)
    n = len(images)
    out: dict[str, np.ndarray] = {}
    rgb = planes.rgb.astype(np.float32)
    means = rgb.mean(axis=-1, dtype=np.float64)
    stds = _std(rgb)
    for k, name in enumerate(("red", "green", "blue")):
        out[f"{name}_mean"], out[f"{name}_std"] = means[:, k], stds[:, k]
    value, grey = planes.value.astype(np.float32) / 255, planes.grey.astype(np.float32)
    for name, x in (("saturation", planes.saturation), ("value", value), ("grey", grey)):
        out[f"{name}_mean"] = x.mean(axis=-1, dtype=np.float64)
        out[f"{name}_std"] = _std(x)
    dark = planes.grey < DARK_MAX_GREY
    out["background_fraction"] = planes.background.mean(axis=-1)
    out["dark_fraction"] = dark.mean(axis=-1)
    lap = laplacian(planes.grey.reshape(n, planes.height, planes.width)).reshape(
        n, (planes.height - 2) * (planes.width - 2)
    )
    lap_sum, lap_sq = lap.sum(axis=-1, dtype=np.int64), (lap * lap).sum(axis=-1, dtype=np.int64)
    out["laplacian_var"] = lap_sq / lap.shape[1] - (lap_sum / lap.shape[1]) ** 2
    mask = centre_mask(planes.height, planes.width)
    inner = mask[1:-1, 1:-1].reshape(-1)
    centre_lap = lap[:, inner]
    c_sum, c_sq = centre_lap.sum(-1, dtype=np.int64), (centre_lap**2).sum(-1, dtype=np.int64)
    c_n, r_n = int(inner.sum()), int((~inner).sum())
    out["centre_laplacian_var"] = c_sq / c_n - (c_sum / c_n) ** 2
    out["ring_laplacian_var"] = (lap_sq - c_sq) / r_n - ((lap_sum - c_sum) / r_n) ** 2
    flat = mask.reshape(-1)
    inside, outside = int(flat.sum()), int((~flat).sum())
    for name, x in (
        ("grey", planes.grey),
        ("saturation", planes.saturation),
        ("background", planes.background),
        ("dark", dark),
    ):
        total = x.sum(axis=-1, dtype=np.float64)
        centre = x[:, flat].sum(axis=-1, dtype=np.float64)
        out[f"centre_{name}"] = centre / inside
        out[f"ring_{name}"] = (total - centre) / outside
    return out


def quality_flags(stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Boolean flags per patch from :func:`patch_statistics`: blank, background_only, blurry.

    Each problem patch is flagged once, under its most basic problem: a blank patch is not
    also background-only or blurry, a background-only one not also blurry.
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


def pooled_mean_std(means: np.ndarray, stds: np.ndarray) -> tuple[float, float]:
    """Pixel-level mean and standard deviation of equally sized patches from their per-patch
    means and standard deviations (law of total variance: exact)."""
    if len(means) == 0:
        return float("nan"), float("nan")
    mean = float(np.mean(means))
    var = float(np.mean(np.square(stds)) + np.var(means))
    return mean, float(np.sqrt(max(var, 0.0)))


@dataclass
class PixelHistograms:
    """Exact pixel-level histograms, 256 bins per channel of :data:`HISTOGRAM_CHANNELS` and per
    group (class), added chunk by chunk: grey by level (0-255); saturation and hue in 256 equal
    bins of [0, 1). Hue counts only pixels with saturation >= :data:`HUE_MIN_SATURATION`."""

    n_groups: int = 1
    counts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.counts = np.zeros((self.n_groups, len(HISTOGRAM_CHANNELS), 256), np.int64)

    def add(self, images: np.ndarray, groups: np.ndarray | None = None) -> None:
        """Add patches; ``groups`` (ints in ``range(n_groups)``, one per patch) picks the class."""
        if len(images):
            self.add_planes(_Planes(images), groups)

    def add_planes(self, planes: _Planes, groups: np.ndarray | None) -> None:
        n = len(planes.grey)
        g = np.zeros(n, np.int64) if groups is None else np.asarray(groups, np.int64)
        if g.shape != (n,) or (n and (g.min() < 0 or g.max() >= self.n_groups)):
            raise ValueError(f"groups must be {n} ints in [0, {self.n_groups})")
        sat = np.minimum((planes.saturation * 256).astype(np.int64), 255)
        columns = (planes.grey, sat, planes.hue_bins())
        offset = (g * 257)[:, None]
        for k, col in enumerate(columns):
            counts = np.bincount((col + offset).ravel(), minlength=self.n_groups * 257)
            self.counts[:, k] += counts.reshape(self.n_groups, 257)[:, :256]

    def density(self, group: int, channel: str) -> np.ndarray:
        """The histogram of one group and channel, normalised to sum 1 (zeros when empty)."""
        c = self.counts[group, HISTOGRAM_CHANNELS.index(channel)].astype(np.float64)
        return c / c.sum() if c.sum() else c

    def hue_summary(self, group: int) -> dict[str, float]:
        """Circular mean and spread (circular standard deviation) of hue, in degrees."""
        w = self.counts[group, HISTOGRAM_CHANNELS.index("hue")].astype(np.float64)
        if w.sum() == 0:
            return {"mean": float("nan"), "std": float("nan")}
        angle = 2 * np.pi * (np.arange(256) + 0.5) / 256
        c, s = (w * np.cos(angle)).sum() / w.sum(), (w * np.sin(angle)).sum() / w.sum()
        length = min(float(np.hypot(c, s)), 1.0)
        spread = float(np.degrees(np.sqrt(-2 * np.log(length)))) if length > 0 else float("inf")
        return {"mean": float(np.degrees(np.arctan2(s, c)) % 360), "std": spread}


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
    small = _resample_rows(grey_levels(images).astype(np.float64), resize)  # rows, then columns
    small = _resample_rows(np.ascontiguousarray(small.transpose(0, 2, 1)), resize)
    # small is transposed (n, x, y): the DCT of its transpose is the transpose of the DCT
    coeffs = np.einsum("ki,nji,lj->nkl", dct, small, dct, optimize=True).reshape(n, -1)
    bits = coeffs > np.median(coeffs, axis=1, keepdims=True)
    weights = np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64)
    return (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], np.int64)


def hamming_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between uint64 hashes (elementwise)."""
    x = np.ascontiguousarray(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64)))
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(x).astype(np.int64)
    return _BYTE_BITS[x[..., None].view(np.uint8)].sum(axis=-1)


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
