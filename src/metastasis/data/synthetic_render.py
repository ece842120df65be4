"""Rendering of the synthetic H&E patches behind ``metastasis.data.synthetic``.

Each 96x96 RGB patch is painted in optical density (Beer-Lambert) from a haematoxylin map
(purple nuclei) and an eosin map (pink stroma, cytoplasm), then blurred, given noise and turned
into uint8 RGB. Nuclei come from fixed banks of sprites, the same for every seed. ``render``
paints one block of consecutive patches of a seed stream.

Everything random about patch i comes from np.random.default_rng([seed, i]): one vector of
uniforms (sliced by _DRAWS) and one byte string (grain + pixel noise). All the maths on them
runs vectorised over a block of patches.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from metastasis.data.decode import PATCH_SIZE

_MAX_LYMPH, _MAX_FIBRO, _GRID = 380, 28, 14
_WAVES = 5  # sinusoids summed into the eosin texture
_DRAWS = {"scalar": 48, "cover": 25, "fat": 64, "warp": 64, "fade": 16, "fibre": 3 * _WAVES,
          "lymph": 4 * _MAX_LYMPH, "fibro": 4 * _MAX_FIBRO, "tumour": 4 * _GRID * _GRID,
          "extra": 12}  # fmt: skip
_OFFSETS = dict(zip(_DRAWS, np.cumsum([0, *_DRAWS.values()])[:-1].tolist(), strict=True))
_N_DRAWS = sum(_DRAWS.values())
_T_RBINS = np.array([3.8, 4.4, 5.0, 5.6, 6.2, 6.8], np.float32)  # tumour nucleus radii
_T_VES, _T_VAR = 3, 24  # vesicular (pale-centre) levels, variants per (radius, level)
_L_RBINS, _L_VAR = 4, 16
_F_ANGLES, _F_VAR = 16, 8
_PAD = 16  # canvas margin: half the largest sprite + nucleus centres just off the patch
_CANVAS = PATCH_SIZE + 2 * _PAD
_H_OD = np.array([0.80, 1.00, 0.40], np.float32)  # optical density per unit haematoxylin
_E_OD = np.array([0.10, 0.50, 0.22], np.float32)  # ... per unit eosin
_GLASS_OD = np.array([0.035, 0.055, 0.035], np.float32)  # empty glass, slightly grey


def _draws(u: np.ndarray, name: str, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Columns ``name`` of the block's uniform draws ``u`` (B, _N_DRAWS), reshaped."""
    lo = _OFFSETS[name]
    return u[:, lo : lo + _DRAWS[name]].reshape(len(u), *(shape or (_DRAWS[name],)))


def _lerp(lo: float, hi: float, t: np.ndarray) -> np.ndarray:
    return lo + (hi - lo) * t


@lru_cache(maxsize=8)
def _upsampler(k: int) -> np.ndarray:
    """``(96, k)`` Gaussian interpolation matrix: ``U @ grid @ U.T`` maps k x k to 96 x 96."""
    pos = (np.arange(PATCH_SIZE) + 0.5) * k / PATCH_SIZE - 0.5
    u = np.exp(-0.5 * ((pos[:, None] - np.arange(k)[None, :]) / 0.75) ** 2)
    return (u / np.sqrt((u**2).sum(1, keepdims=True))).astype(np.float32)


def _smooth(grids: np.ndarray) -> np.ndarray:
    """Upsample ``(B, k, k)`` uniform grids to smooth zero-mean ``(B, 96, 96)`` fields."""
    u = _upsampler(grids.shape[-1])
    return np.matmul(np.matmul(u, grids - 0.5), u.T)


def _blur(img: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur over the last two axes, edges replicated."""
    p = np.pad(img, [(0, 0)] * (img.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    p = 0.25 * p[..., :-2, :] + 0.5 * p[..., 1:-1, :] + 0.25 * p[..., 2:, :]
    return 0.25 * p[..., :-2] + 0.5 * p[..., 1:-1] + 0.25 * p[..., 2:]


def _nucleus_sprites(
    rng: np.random.Generator, win: int, a: np.ndarray, b: np.ndarray, angle: np.ndarray,
    irregular: np.ndarray, vesicular: np.ndarray, nucleolus: np.ndarray, grain: float,
) -> np.ndarray:  # fmt: skip
    """Render ``(K, win * win)`` haematoxylin density sprites of unit strength."""
    k = len(a)
    o = np.arange(win, dtype=np.float32) - win // 2
    col = [np.asarray(v, np.float32)[:, None, None] for v in (a, b, angle, irregular)]
    dx, dy = o[None, None, :], o[None, :, None]
    u = (dx * np.cos(col[2]) + dy * np.sin(col[2])) / col[0]
    v = (dy * np.cos(col[2]) - dx * np.sin(col[2])) / col[1]
    phi = np.arctan2(v, u)
    ph = rng.uniform(0, 2 * np.pi, (3, k, 1, 1))
    bound = 1 + col[3] * (np.cos(2 * phi - ph[0]) + 0.6 * np.cos(3 * phi - ph[1]))
    d = np.hypot(u, v) / bound
    inside = np.clip((1 - d) * np.sqrt(col[0] * col[1]) / 0.8 + 0.5, 0, 1)
    core = 1 - vesicular[:, None, None] * np.clip(1 - d * d, 0, 1) ** 0.5
    chrom = _blur(rng.standard_normal((k, win, win)))
    nx, ny = (rng.uniform(-0.3, 0.3, (2, k, 1, 1)) * col[0]).astype(np.float32)
    dot = nucleolus[:, None, None] * np.exp(-((dx - nx) ** 2 + (dy - ny) ** 2) / 1.2)
    dens = inside * (core * (1 + grain * chrom) + dot)
    return np.clip(dens, 0, None).reshape(k, win * win).astype(np.float32)


@lru_cache(maxsize=1)
def _sprite_banks() -> dict[str, _Bank]:
    """Fixed banks of nucleus sprites (the same for every seed), built on first use."""
    rng = np.random.default_rng(20_160_801)
    # tumour: radius bin x vesicular level x variant; large, irregular, nucleoli
    n = len(_T_RBINS) * _T_VES * _T_VAR
    r = np.repeat(_T_RBINS, _T_VES * _T_VAR) * rng.uniform(0.93, 1.07, n)
    ves = np.tile(np.repeat(np.array([0.05, 0.35, 0.6]), _T_VAR), len(_T_RBINS))
    aspect = rng.uniform(1.0, 1.7, n)
    tumour = _nucleus_sprites(
        rng, 27, r * np.sqrt(aspect), r / np.sqrt(aspect), rng.uniform(0, np.pi, n),
        rng.uniform(0.04, 0.16, n), ves, rng.uniform(0, 0.9, n) * (ves > 0.2), 0.35,
    )  # fmt: skip
    # lymphocytes: radius bin x variant; small, round, dense
    n = _L_RBINS * _L_VAR
    r = np.repeat(np.linspace(1.9, 2.9, _L_RBINS), _L_VAR) * rng.uniform(0.95, 1.05, n)
    aspect = rng.uniform(1.0, 1.3, n)
    lymph = _nucleus_sprites(
        rng, 11, r * np.sqrt(aspect), r / np.sqrt(aspect), rng.uniform(0, np.pi, n),
        rng.uniform(0.0, 0.08, n), np.zeros(n), np.zeros(n), 0.1,
    )  # fmt: skip
    # fibroblasts: angle bin x variant; long, thin, slightly wavy
    n = _F_ANGLES * _F_VAR
    angle = np.repeat(np.arange(_F_ANGLES) * np.pi / _F_ANGLES, _F_VAR)
    fibro = _nucleus_sprites(
        rng, 21, rng.uniform(4.0, 8.0, n), rng.uniform(1.1, 1.8, n), angle,
        rng.uniform(0.0, 0.1, n), np.full(n, 0.1), np.zeros(n), 0.1,
    )  # fmt: skip
    return {"tumour": _sparse(tumour, 27), "lymph": _sparse(lymph, 11), "fibro": _sparse(fibro, 21)}


class _Bank(NamedTuple):
    """Sparse sprites: canvas offsets and densities ``(K, M)``, reach in pixels ``(K,)``."""

    offsets: np.ndarray
    values: np.ndarray
    extent: np.ndarray


def _sparse(sprites: np.ndarray, win: int) -> _Bank:
    """Keep each sprite's non-zero pixels (padded with zeros to the largest count)."""
    nonzero = sprites > 1e-3
    m = int(nonzero.sum(1).max())
    order = np.argsort(~nonzero, axis=1, kind="stable")[:, :m]  # non-zero pixels first
    dy, dx = np.divmod(order, win)
    dy, dx = dy - win // 2, dx - win // 2
    used = np.take_along_axis(nonzero, order, 1)
    values = np.where(used, np.take_along_axis(sprites, order, 1), 0)
    extent = np.where(used, np.maximum(abs(dx), abs(dy)), 0).max(1)
    return _Bank(dy * _CANVAS + dx, values.astype(np.float32), extent)


def _splat(
    bank: _Bank, keep: np.ndarray, x: np.ndarray, y: np.ndarray, sprite: np.ndarray,
    amp: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Flat canvas indices and densities of the kept ``(b, n)`` sprites at pixels ``(x, y)``."""
    patch = np.nonzero(keep)[0]
    base = patch * (_CANVAS * _CANVAS) + (y[keep] + _PAD) * _CANVAS + (x[keep] + _PAD)
    sprite = sprite[keep]
    dens = bank.values[sprite] * amp[keep][:, None]
    return (base[:, None] + bank.offsets[sprite]).ravel(), dens.ravel()


def render(
    seed: int, start: int, stop: int, positive_fraction: float, masks: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Render patches ``start:stop`` of the ``seed`` stream: images, labels, tumour masks."""
    b = stop - start
    u = np.empty((b, _N_DRAWS), np.float32)
    noise = np.empty((b, 2 * PATCH_SIZE * PATCH_SIZE), np.uint8)
    for j in range(b):
        rng = np.random.default_rng([seed, start + j])
        u[j] = rng.random(_N_DRAWS, np.float32)
        noise[j] = np.frombuffer(rng.bytes(2 * PATCH_SIZE * PATCH_SIZE), np.uint8)
    unit = (
        noise.reshape(b, 2, PATCH_SIZE, PATCH_SIZE).astype(np.float32) - 127.5
    ) / 73.9  # mean 0, sd 1
    grain, pixel_noise = unit[:, 0], unit[:, 1]
    sc = _draws(u, "scalar").T[:, :, None, None]  # sc[k]: (b, 1, 1)
    labels = (sc[0, :, 0, 0] < positive_fraction).astype(np.int64)
    kind = np.digitize(sc[1, :, 0, 0], [0.45, 0.8])  # 0 lymphoid, 1 stroma, 2 fat
    kk = kind[:, None, None]

    field = _smooth(_draws(u, "cover", (5, 5))) * 2.5  # smooth, sd about 0.7
    cover = _tissue_cover(u, sc, kk, field)
    off = (labels == 0) & (sc[15, :, 0, 0] < 0.5)  # label 0 with tumour outside the centre
    region = _tumour_region(sc, labels == 1, off, field)
    cover = np.maximum(cover, region)

    e_level = np.array([0.55, 1.0, 0.85], np.float32)[kk] * _lerp(0.7, 1.3, sc[7])
    eosin = e_level * (0.3 + 0.9 * _eosin_texture(u, sc, kind))
    cyto = _lerp(0.35, 0.75, sc[11]) * (1 + 0.1 * grain)
    eosin = cover * ((1 - region) * eosin + region * cyto)
    haze = _lerp(0.02, 0.1, sc[8]) + np.float32(0.1) * (kk == 0)
    haema = cover * ((1 - region) * haze + region * _lerp(0.05, 0.16, sc[12]))

    # nuclei: sprites added onto a padded canvas; overlaps saturate instead of adding up
    canvas = np.zeros(b * _CANVAS * _CANVAS, np.float32)
    pieces = _nuclei(u, sc[:, :, 0, 0], kind, labels, off, cover, region)
    for idx, dens in pieces:
        np.add.at(canvas, idx, dens)
    tumour = None
    if masks:  # pixels of tumour nuclei (pieces[-1]), before blur
        density = np.zeros(b * _CANVAS * _CANVAS, np.float32)
        np.add.at(density, *pieces[-1])
        tumour = density.reshape(b, _CANVAS, _CANVAS)[:, _PAD:-_PAD, _PAD:-_PAD] > 0.1
    nuclei = canvas.reshape(b, _CANVAS, _CANVAS)[:, _PAD:-_PAD, _PAD:-_PAD]
    nuclei = 1.6 * (1 - np.exp(nuclei * np.float32(-1 / 1.6)))
    haema = haema + nuclei * (1 + 0.12 * grain)
    eosin = eosin * (1 - 0.5 * np.clip(nuclei, 0, 1))

    # blur (per-patch strength), stain jitter, Beer-Lambert, noise
    soft = _lerp(0.06, 0.22, sc[13])
    haema, eosin = _soften(haema, soft), _soften(eosin, soft)
    jit = sc[36:48, :, 0, 0].T  # (b, 12)
    h_od = _H_OD * _lerp(0.7, 1.35, jit[:, :1]) * np.exp(_lerp(-0.17, 0.17, jit[:, 1:4]))
    e_od = _E_OD * _lerp(0.65, 1.35, jit[:, 4:5]) * np.exp(_lerp(-0.25, 0.25, jit[:, 5:8]))
    glass = _GLASS_OD * _lerp(0.5, 1.8, jit[:, 8:9])
    dither = _lerp(1.5, 4.0, sc[14]) * pixel_noise + 0.5
    images = np.empty((b, PATCH_SIZE, PATCH_SIZE, 3), np.uint8)
    for ch in range(3):  # one channel at a time: contiguous (b, 96, 96) maths is much faster
        od = haema * h_od[:, ch, None, None]
        od += eosin * e_od[:, ch, None, None]
        od += glass[:, ch, None, None]
        np.exp(-od, out=od)
        od *= 255.0
        od += dither
        images[..., ch] = np.clip(od, 0, 255)
    return images, labels, tumour


_XS = np.arange(PATCH_SIZE, dtype=np.float32)[None, None, :]  # pixel x and y, for broadcasting
_YS = _XS.transpose(0, 2, 1)
_BOX = np.maximum(np.abs(_XS - 47.5), np.abs(_YS - 47.5))  # Chebyshev distance to the centre
_ROUND = ((_XS - 47.5) ** 4 + (_YS - 47.5) ** 4) ** 0.25  # rounded-square distance


def _tissue_cover(u: np.ndarray, sc: np.ndarray, kk: np.ndarray, field: np.ndarray) -> np.ndarray:
    """Tissue (1) versus glass (0): white gaps in some patches, fat cell walls in fat patches."""
    gaps = np.where(sc[9] < 0.3, _lerp(0.2, 1.0, sc[10]), 99.0)
    cover = np.clip((gaps - field) * 3.0, 0, 1)
    fat = _smooth(_draws(u, "fat", (8, 8))) * _lerp(0.6, 1.0, sc[35])
    walls = np.exp(-((fat / 0.04) ** 2))  # zero-crossings of a smooth field: a cell network
    fat_part = np.clip((0.7 - field) * 3.0, 0, 1)  # fat in most of the patch, tissue elsewhere
    return np.where(kk == 2, np.minimum(cover, 1 - fat_part * (1 - walls)), cover)


def _tumour_region(
    sc: np.ndarray, pos: np.ndarray, off: np.ndarray, field: np.ndarray
) -> np.ndarray:
    """Soft irregular tumour area: over the centre (``pos``), outside it (``off``), or none."""
    region = np.zeros(field.shape, np.float32)
    t = np.flatnonzero(pos | off)
    if not len(t):
        return region
    p, o = pos[t, None, None], off[t, None, None]
    q = sc[:, t]
    ang, dist = q[16] * 2 * np.pi, _lerp(30, 50, q[17])
    cx = np.where(p, 47.5 + _lerp(-6, 6, q[16]), 47.5 + dist * np.cos(ang))
    cy = np.where(p, 47.5 + _lerp(-6, 6, q[17]), 47.5 + dist * np.sin(ang))
    rx = np.where(p, _lerp(18, 52, q[18]), _lerp(18, 44, q[18]))
    ry = np.where(p, _lerp(18, 52, q[19]), _lerp(18, 44, q[19]))
    c, s = np.cos(q[20] * np.pi), np.sin(q[20] * np.pi)
    dx, dy = _XS - cx, _YS - cy
    bu, bv = (dx * c + dy * s) / rx, (dy * c - dx * s) / ry
    rho2 = bu * bu + bv * bv + 1e-6
    rho = np.sqrt(rho2)
    cos1, cos2, sin2 = bu / rho, (bu * bu - bv * bv) / rho2, 2 * bu * bv / rho2  # of the angle
    bound = 1 + 0.2 * q[21] * (cos2 * np.cos(6.3 * q[22]) + sin2 * np.sin(6.3 * q[22]))
    bound += 0.12 * q[23] * cos1 * (4 * cos1 * cos1 - 3) + 0.12 * field[t]  # 3-fold lobes, noise
    soft = np.clip((bound - rho) * np.minimum(rx, ry) / 2.0 + 0.5, 0, 1)
    # label 0: keep clear of the centre with a wobbly rounded-square cut (never inside the box)
    cut = np.clip((_ROUND - 25.0 + 3.0 * field[t]) / 4.0, 0, 1) * (_BOX > 17.0)
    region[t] = np.where(o, soft * cut, soft)
    return region


def _eosin_texture(u: np.ndarray, sc: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Eosin pattern in [0, 1]: wavy collagen (stroma), fine mottling (lymphoid), flat (fat).

    A sum of sinusoids, near-parallel for stroma, bent by a smooth warp field and faded in
    and out by a second one.
    """
    w = _draws(u, "fibre", (3, _WAVES))
    spread = np.array([np.pi, 0.3, 0.3], np.float32)[kind, None]
    angle = (sc[2, :, 0] * np.pi) + spread * (w[:, 0] - 0.5) * 2  # (b, waves): across fibres
    wavelen = np.where(kind[:, None] == 0, _lerp(2.5, 5.0, w[:, 1]), _lerp(4.0, 11.0, w[:, 1]))
    kx, ky = np.cos(angle) * 2 * np.pi / wavelen, np.sin(angle) * 2 * np.pi / wavelen
    warp = _smooth(_draws(u, "warp", (8, 8))) * _lerp(6.0, 24.0, sc[6])
    texture = np.zeros_like(warp)
    for i in range(_WAVES):
        kxi, kyi = kx[:, i, None, None], ky[:, i, None, None]
        arg = warp * np.hypot(kxi, kyi)
        arg += _XS * kxi + (_YS * kyi + 6.3 * w[:, 2, i, None, None])
        texture += np.sin(arg)
    fade = np.clip(0.7 + 2.0 * _smooth(_draws(u, "fade", (4, 4))), 0.15, 1.3)
    gain = np.array([0.12, 0.24, 0.05], np.float32)[kind, None, None] * _lerp(0.6, 1.3, sc[5])
    return np.clip(texture * fade * gain + 0.5, 0, 1)


def _soften(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Blur ``(b, 96, 96)`` maps with the kernel ``[a, 1 - 2a, a]`` per axis, edges replicated."""
    for axis in (1, 2):
        y = x * (1 - 2 * a)
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        y[tuple(hi)] += a * x[tuple(lo)]
        y[tuple(lo)] += a * x[tuple(hi)]
        first, last = [slice(None)] * 3, [slice(None)] * 3
        first[axis], last[axis] = slice(0, 1), slice(-1, None)
        y[tuple(first)] += a * x[tuple(first)]
        y[tuple(last)] += a * x[tuple(last)]
        x = y
    return x


def _nuclei(
    u: np.ndarray, sv: np.ndarray, kind: np.ndarray, labels: np.ndarray, off: np.ndarray,
    cover: np.ndarray, region: np.ndarray,
) -> list[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """Place lymphocytes, fibroblasts and tumour nuclei: (canvas indices, densities) per kind."""
    b = len(u)
    banks = _sprite_banks()
    at = np.arange(b)[:, None]

    def lookup(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return field[np.broadcast_to(at, x.shape), np.clip(y, 0, 95), np.clip(x, 0, 95)]

    def place(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # anywhere, a little off-patch
        xy = np.floor(_lerp(-3, 99, d[:, :2])).astype(int)
        return xy[:, 0], xy[:, 1]

    # lymphocytes: crowded in lymphoid tissue, none inside the tumour or on glass
    d = _draws(u, "lymph", (4, _MAX_LYMPH))
    lo, hi = np.array([[200, 30, 14], [_MAX_LYMPH, 0, 0]])[:, kind]
    x, y = place(d)
    keep = np.arange(_MAX_LYMPH) < (lo + (hi - lo) * sv[31])[:, None]
    keep &= (lookup(cover, x, y) > 0.4) & (lookup(region, x, y) < 0.3)
    rbin = np.clip(np.floor(sv[32][:, None] * 3 + d[:, 2] * 2), 0, _L_RBINS - 1)
    sprite = (rbin * _L_VAR + np.floor(d[:, 3] * _L_VAR)).astype(int)
    amp = _lerp(1.1, 1.6, sv[33][:, None]) * _lerp(0.8, 1.1, d[:, 3])
    pieces = [_splat(banks["lymph"], keep, x, y, sprite, amp)]

    # fibroblasts: thin, along the collagen
    d = _draws(u, "fibro", (4, _MAX_FIBRO))
    lo, hi = np.array([[0, 6, 0], [6, _MAX_FIBRO, 6]])[:, kind]
    x, y = place(d)
    keep = np.arange(_MAX_FIBRO) < (lo + (hi - lo) * sv[34])[:, None]
    keep &= (lookup(cover, x, y) > 0.4) & (lookup(region, x, y) < 0.3)
    angle = (sv[2][:, None] + _lerp(-0.08, 0.08, d[:, 2])) % 1.0
    sprite = (np.floor(angle * _F_ANGLES) * _F_VAR + np.floor(d[:, 3] * _F_VAR)).astype(int)
    pieces.append(_splat(banks["fibro"], keep, x, y, sprite, _lerp(0.9, 1.3, d[:, 3])))

    # tumour nuclei: a crowded jittered lattice inside the region, plus three spares that
    # are used when a label-1 patch would otherwise have fewer than three in the centre
    d = _draws(u, "tumour", (4, _GRID * _GRID))
    e = _draws(u, "extra", (4, 3))
    r_mean = _lerp(3.8, 6.4, sv[25][:, None])
    step = 2 * r_mean * _lerp(1.0, 1.3, sv[26][:, None])
    k = np.arange(_GRID * _GRID)
    gx = (k % _GRID + _lerp(-1.0, 0.0, sv[27][:, None]) + _lerp(-0.3, 0.3, d[:, 0])) * step
    gy = (k // _GRID + _lerp(-1.0, 0.0, sv[28][:, None]) + _lerp(-0.3, 0.3, d[:, 1])) * step
    x = np.concatenate([np.floor(gx), np.floor(_lerp(40, 56, e[:, 0]))], 1).astype(int)
    y = np.concatenate([np.floor(gy), np.floor(_lerp(40, 56, e[:, 1]))], 1).astype(int)
    d = np.concatenate([d[:, 2:], e[:, 2:]], 2)
    radius = r_mean * np.exp(_lerp(-0.3, 0.3, d[:, 0]))  # pleomorphic sizes
    rbin = np.clip(np.searchsorted(_T_RBINS, radius), 0, len(_T_RBINS) - 1)
    ves = np.floor(sv[30][:, None] * _T_VES)
    sprite = ((rbin * _T_VES + ves) * _T_VAR + np.floor(d[:, 1] * _T_VAR)).astype(int)
    amp = _lerp(0.7, 1.25, sv[29][:, None]) * _lerp(0.8, 1.25, d[:, 1])
    spare = k.size <= np.arange(x.shape[1])
    keep = ~spare & (x > -4) & (x < 99) & (y > -4) & (y < 99) & (lookup(region, x, y) > 0.5)
    # label 0: no tumour pixel may reach the centre 32x32 (one pixel of slack for the blur)
    box = np.maximum(np.abs(x - 47.5), np.abs(y - 47.5))
    keep &= ~off[:, None] | (box - banks["tumour"].extent[sprite] > 17)
    central = (keep & (box < 12)).sum(1)
    keep |= spare & ((labels == 1) & (central < 3))[:, None]
    pieces.append(_splat(banks["tumour"], keep, x, y, sprite, amp))
    return pieces
