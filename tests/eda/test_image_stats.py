"""Tests for metastasis.eda.image_stats: each statistic on tiny arrays with known answers."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2hsv
from tests.helpers import patches

from metastasis.eda import image_stats as st


def _patch(rgb: tuple[int, int, int], size: int = 96) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (size, size, 3)).copy()


def _one(patch: np.ndarray) -> dict[str, float]:
    return {k: float(v[0]) for k, v in st.patch_statistics(patch[None]).items()}


def test_grey_levels_match_pillow() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(st.grey_levels(rgb), expected)
    assert st.grey_levels(np.array([[255, 255, 255], [0, 0, 0]], np.uint8)).tolist() == [255, 0]


def test_laplacian_known_answers() -> None:
    assert st.laplacian_variance(np.full((6, 6), 77, np.uint8)) == 0
    dot = np.zeros((5, 5), np.uint8)
    dot[2, 2] = 30
    lap = st.laplacian(dot)
    assert lap.tolist() == [[0, 30, 0], [30, -120, 30], [0, 30, 0]]
    assert st.laplacian_variance(dot) == pytest.approx(20 * 30**2 / 9)
    board = (np.indices((6, 6)).sum(axis=0) % 2 * 255).astype(np.uint8)
    assert st.laplacian_variance(board) == pytest.approx(1020.0**2)


def test_uniform_patches() -> None:
    white = _one(_patch((255, 255, 255)))
    assert white["grey_mean"] == 255 and white["grey_std"] == 0
    assert white["background_fraction"] == 1 and white["dark_fraction"] == 0
    assert white["saturation_mean"] == 0 and white["value_mean"] == 1
    assert white["laplacian_var"] == 0
    red = _one(_patch((255, 0, 0)))
    assert (red["red_mean"], red["green_mean"], red["blue_mean"]) == (255, 0, 0)
    assert red["saturation_mean"] == 1 and red["value_mean"] == 1
    assert red["grey_mean"] == 76 and red["background_fraction"] == 0  # round(0.299 * 255)
    black = _one(_patch((0, 0, 0)))
    assert black["dark_fraction"] == 1 and black["saturation_mean"] == 0


def test_spreads_and_fractions() -> None:
    half = _patch((0, 0, 0))
    half[:, 48:] = 255  # left black, right white
    s = _one(half)
    assert s["grey_mean"] == pytest.approx(127.5) and s["grey_std"] == pytest.approx(127.5)
    assert s["background_fraction"] == 0.5 and s["dark_fraction"] == 0.5
    stripes = _patch((0, 10, 20))
    stripes[::2, :, 0] = 100  # red alternates 0 / 100 by row
    s = _one(stripes)
    assert s["red_mean"] == pytest.approx(50) and s["red_std"] == pytest.approx(50)
    assert s["green_std"] == 0 and s["blue_mean"] == pytest.approx(20)


def test_hsv_matches_skimage() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    hsv = rgb2hsv(rgb)
    s = st.patch_statistics(rgb)
    np.testing.assert_allclose(s["saturation_mean"], hsv[..., 1].mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(s["value_mean"], hsv[..., 2].mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(s["saturation_std"], hsv[..., 1].std(axis=(1, 2)), rtol=1e-4)
    hist = st.PixelHistograms()
    hist.add(rgb)
    coloured = hsv[..., 1] >= st.HUE_MIN_SATURATION
    expected = np.bincount((hsv[..., 0][coloured] * 256).astype(int), minlength=256)
    got = hist.counts[0, st.HISTOGRAM_CHANNELS.index("hue")]
    # skimage works in float64 on levels / 255: rounding moves a few pixels across bin edges
    assert abs(int(got.sum()) - int(coloured.sum())) <= 0.001 * coloured.sum()
    assert np.abs(got - expected).sum() <= 0.002 * coloured.sum()


def test_centre_and_ring() -> None:
    p = _patch((0, 0, 0))
    p[32:64, 32:64] = 255
    s = _one(p)
    assert (s["centre_grey"], s["ring_grey"]) == (255, 0)
    assert (s["centre_background"], s["ring_background"]) == (1, 0)
    assert (s["centre_dark"], s["ring_dark"]) == (0, 1)
    assert s["centre_laplacian_var"] > 0 and s["ring_laplacian_var"] > 0  # the square's edges
    assert st.centre_mask(96, 96).sum() == 32 * 32 and st.centre_mask(96, 96)[32, 32]
    smooth = _one(_patch((90, 40, 120)))
    assert smooth["centre_laplacian_var"] == smooth["ring_laplacian_var"] == 0


def test_quality_flags() -> None:
    rng = np.random.default_rng(2)
    blank = _patch((240, 238, 242))
    glass = _patch((245, 245, 245))
    glass[:4, :4] = (200, 60, 150)  # a speck of tissue: not uniform, still background-only
    ramp = np.linspace(120, 160, 96).astype(np.uint8)
    blurry = np.stack(
        [ramp[None, :].repeat(96, 0), np.full((96, 96), 60), ramp[:, None].repeat(96, 1)], -1
    ).astype(np.uint8)
    sharp = rng.integers(40, 200, (96, 96, 3), dtype=np.uint8)
    stats = st.patch_statistics(np.stack([blank, glass, blurry, sharp]))
    flags = st.quality_flags(stats)
    assert flags["blank"].tolist() == [True, False, False, False]
    assert flags["background_only"].tolist() == [False, True, False, False]
    assert flags["blurry"].tolist() == [False, False, True, False]
    assert set(st.FLAG_RULES) == set(flags)


def test_pooled_mean_std_is_exact() -> None:
    a = np.array([1.0, 2, 3, 4])
    b = np.array([10.0, 10, 12, 12])
    mean, sd = st.pooled_mean_std(np.array([a.mean(), b.mean()]), np.array([a.std(), b.std()]))
    both = np.concatenate([a, b])
    assert mean == pytest.approx(both.mean()) and sd == pytest.approx(both.std())
    assert all(np.isnan(st.pooled_mean_std(np.zeros(0), np.zeros(0))))


def test_pixel_histograms_by_group() -> None:
    images = np.stack([_patch((255, 0, 0), 4), _patch((0, 0, 255), 4), _patch((0, 255, 0), 4)])
    hist = st.PixelHistograms(2)
    hist.add(images, np.array([0, 1, 1]))
    grey = hist.counts[:, st.HISTOGRAM_CHANNELS.index("grey")]
    assert grey[0, 76] == 16 and grey[1, 29] == 16 and grey[1, 150] == 16  # red, blue, green
    assert hist.counts[0].sum(axis=1).tolist() == [16, 16, 16]
    assert hist.density(1, "saturation")[255] == 1.0
    assert hist.hue_summary(0)["mean"] == pytest.approx(0.7, abs=0.01)  # bin centre of 0 deg
    assert hist.hue_summary(0)["std"] == pytest.approx(0, abs=1e-3)
    blue_green = hist.hue_summary(1)["mean"]  # 240 and 120 degrees, circular mean 180
    assert blue_green == pytest.approx(180.0, abs=0.01)
    with pytest.raises(ValueError, match="groups"):
        hist.add(images, np.array([0, 1, 2]))


def test_perceptual_hashes_equal_imagehash() -> None:
    images, _ = patches(6, seed=4)
    rng = np.random.default_rng(5)
    images = np.concatenate([images, rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)])
    ours = st.perceptual_hashes(images)
    theirs = [int(str(imagehash.phash(Image.fromarray(im))), 16) for im in images]
    assert ours.tolist() == theirs
    assert st.perceptual_hashes(np.zeros((0, 96, 96, 3), np.uint8)).shape == (0,)


def test_hamming_distance() -> None:
    a = np.array([0b1011, 0, 2**64 - 1], np.uint64)
    b = np.array([0, 0, 0], np.uint64)
    assert st.hamming_distance(a, b).tolist() == [3, 0, 64]


def test_close_pairs_match_brute_force() -> None:
    rng = np.random.default_rng(6)
    base = rng.integers(0, 2**63, 300, dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, (40, 4)).astype(np.uint64)
    near = base[:40] ^ flips[:, 0] ^ flips[:, 1] ^ flips[:, 2]  # within 3 bits of base[:40]
    hashes = np.unique(np.concatenate([base, near]))
    for d in (2, 4):
        dist = st.hamming_distance(hashes[:, None], hashes[None, :])
        i, j = np.nonzero(np.triu(dist <= d, 1))
        expected = sorted([a, b] for a, b in zip(i.tolist(), j.tolist()))
        assert len(expected) >= 40 if d == 4 else len(expected) > 0
        assert st.close_pairs(hashes, d).tolist() == expected


def test_near_duplicate_groups() -> None:
    far = 2**40 + 2**41 + 2**42
    h = np.array([0b0, 0b111, 0b1, far, 0b1, far + 2**43 + 2**44], np.uint64)
    groups = st.near_duplicate_groups(h, max_distance=2)
    # 0 - 1 - 0b111 is a chain (1 and 2 bits apart) though 0 and 0b111 are 3 apart
    assert [g.tolist() for g in groups] == [[0, 1, 2, 4], [3, 5]]
    assert st.near_duplicate_groups(h, max_distance=0)[0].tolist() == [2, 4]
    assert st.near_duplicate_groups(np.zeros(0, np.uint64), 4) == []


def test_typicality_and_pca() -> None:
    x = np.array([[1.0, 5], [2, 5], [3, 5]])
    np.testing.assert_allclose(st.typicality(x), [np.sqrt(1.5 / 2), 0, np.sqrt(1.5 / 2)])
    t = np.linspace(0, 1, 50)
    line = np.stack([t, 2 * t + 1, -t], axis=1)
    coords, ratio, loadings = st.pca_2d(line)
    assert ratio[0] == pytest.approx(1) and ratio[1] == pytest.approx(0, abs=1e-12)
    assert np.corrcoef(coords[:, 0], t)[0, 1] == pytest.approx(1)
    assert loadings.shape == (2, 3)


def test_thresholds_are_recorded() -> None:
    values = st.thresholds()
    assert values["blank_max_std"] == st.BLANK_MAX_STD
    assert values["near_duplicate_max_distance"] == st.NEAR_DUPLICATE_MAX_DISTANCE
    assert len(values) == 9


def test_rejects_wrong_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        st.patch_statistics(np.zeros((1, 96, 96, 3), np.float32))
