"""slides.postprocess: smoothing, hysteresis, minimum size and the slide score on hand-made
probability grids; the options' one-line errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from metastasis.errors import MetastasisError
from metastasis.slides.options import slide_options
from metastasis.slides.postprocess import (
    PostProcess,
    chance_min_tiles,
    drop_small,
    hysteresis,
    lesion_mask,
    slide_score,
    smooth,
)
from metastasis.slides.regions import find_lesions

MPP0 = 0.25
STEP = 128.0


def test_smoothing_spreads_a_spike_keeps_nan_and_is_not_diluted_by_glass() -> None:
    p = np.full((9, 9), 0.1, np.float32)
    p[4, 4] = 1.0
    p[:, 0] = np.nan  # glass: not classified
    s = smooth(p, 1.0)
    assert np.isnan(s[:, 0]).all() and np.isfinite(s[:, 1:]).all()
    assert 0.1 < s[4, 4] < 0.35  # a lone tile loses most of its height
    assert s[4, 5] == pytest.approx(s[4, 3], rel=0.01) and s[4, 5] > s[4, 6] > 0.1
    flat = np.full((6, 6), 0.3, np.float32)
    flat[:, :2] = np.nan
    assert np.allclose(smooth(flat, 2.0)[:, 2:], 0.3)  # the tissue's edge keeps its value
    assert np.array_equal(smooth(p, 0.0), p, equal_nan=True)


def test_hysteresis_grows_from_seeds_only_and_keeps_corners_apart() -> None:
    v = np.zeros((7, 9))
    v[1:4, 1:4] = 0.6  # grown: holds a seed
    v[2, 2] = 0.95
    v[1:4, 6:8] = 0.7  # above grow, no seed: dropped
    v[4, 4] = 0.99  # a seed touching the first block only at a corner: its own set
    v[5, 0] = np.nan
    kept = hysteresis(v, seed=0.9, grow=0.5)
    expected = np.zeros_like(kept)
    expected[1:4, 1:4] = True
    expected[4, 4] = True
    assert np.array_equal(kept, expected)
    assert not hysteresis(np.full((3, 3), np.nan), 0.9, 0.5).any()


def test_min_size_drops_specks_and_keeps_lesions() -> None:
    m = np.zeros((8, 8), bool)
    m[0, 0] = True
    m[5, 5] = m[5, 6] = True
    m[1:4, 2:5] = True
    assert np.array_equal(drop_small(m, 1), m)
    kept = drop_small(m, 3)
    assert kept.sum() == 9 and kept[1:4, 2:5].all()
    assert drop_small(m, 2).sum() == 11


def test_post_processing_keeps_the_lesion_and_drops_scattered_false_positives() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.0, 0.4, (30, 30)).astype(np.float32)
    specks = [(2, 2), (2, 20), (25, 5), (27, 27), (15, 2)]
    for r, c in specks:
        p[r, c] = 0.97
    p[10:16, 12:18] = 0.95  # a 6 x 6 tile lesion
    raw = find_lesions(p, 0.5, (0.0, 0.0), STEP, MPP0)
    assert len(raw) == 6
    post = PostProcess(sigma=1.0, seed=0.8, grow=0.5, min_tiles=2)
    (les,) = find_lesions(p, 0.5, (0.0, 0.0), STEP, MPP0, post)
    assert les.tiles == pytest.approx(36, abs=8)  # the outline moves by at most a tile
    assert les.max_probability == pytest.approx(0.95)  # measured on the raw map
    assert lesion_mask(p, PostProcess.raw(0.5)).sum() == 36 + len(specks)


def test_slide_score_is_the_peak_the_smoothed_maximum_or_the_largest_diameter() -> None:
    p = np.full((5, 5), 0.2, np.float32)
    p[2, 2] = 0.9
    p[0, 0] = np.nan
    peak = PostProcess(sigma=1.0, seed=0.9, grow=0.5, min_tiles=1)  # the default score
    assert slide_score(p, None, peak) == pytest.approx(0.9)  # not smoothed: sigma is ignored
    post = PostProcess(sigma=1.0, seed=0.9, grow=0.5, min_tiles=1, score="max")
    assert slide_score(p, None, post) == pytest.approx(float(np.nanmax(smooth(p, 1.0))))
    assert slide_score(p, None, post) < 0.5
    assert slide_score(p, None, PostProcess.raw(0.5, "max")) == pytest.approx(0.9)
    diameter = PostProcess(score="diameter")
    assert slide_score(p, 1.5, diameter) == 1.5 and slide_score(p, None, diameter) == 0.0
    assert slide_score(np.full((2, 2), np.nan), None, post) is None
    assert "sigma 1 tiles" in post.score_definition()


def test_options_give_one_line_errors_and_the_seed_is_never_below_grow() -> None:
    with pytest.raises(MetastasisError, match=r"lesion_grow \(0.8\) <= lesion_seed \(0.6\)"):
        slide_options({"lesion_grow": 0.8, "lesion_seed": 0.6})
    for bad in ({"lesion_sigma": -1}, {"min_lesion_tiles": 0}, {"slide_score": "mean"},
                {"lesion_seed": 1.5}, {"lesion_shuffles": -1}):  # fmt: skip
        with pytest.raises(MetastasisError) as err:
            slide_options(bad)
        assert "\n" not in str(err.value) and next(iter(bad)) in str(err.value)
    opts = slide_options({"lesion_seed": 0.7})
    post = PostProcess.from_options(opts, threshold=0.85)  # the model's threshold is higher
    assert (post.grow, post.seed) == (0.85, 0.85)
    with pytest.raises(MetastasisError, match="grow"):
        PostProcess(seed=0.4, grow=0.6)


def _noisy_slide(rate: float, seed: int = 0) -> np.ndarray:
    """60 x 60 cells of tissue: false-positive tiles (p 0.95) at ``rate`` on a 0.05 background,
    a 3 x 3 corner of glass, and an 8 x 8 lesion (p 0.9) in the middle."""
    rng = np.random.default_rng(seed)
    p = np.where(rng.random((60, 60)) < rate, 0.95, 0.05).astype(np.float32)
    p[:3, :3] = np.nan
    p[26:34, 26:34] = 0.9
    return p


def test_lesions_no_larger_than_chance_are_dropped_on_a_slide_dense_with_false_tiles() -> None:
    post = PostProcess(sigma=1.0, seed=0.5, grow=0.5, min_tiles=4, shuffles=50)
    fixed = PostProcess(sigma=1.0, seed=0.5, grow=0.5, min_tiles=4)
    dense = _noisy_slide(0.2)
    from scipy import ndimage

    _, n_fixed = ndimage.label(lesion_mask(dense, fixed))
    assert n_fixed > 3  # the fixed size lets chance clusters through
    k = chance_min_tiles(dense, post)
    assert k > 4 and k == chance_min_tiles(dense, post)  # larger; the same for the same map
    labels, n = ndimage.label(lesion_mask(dense, post))
    sizes = np.bincount(labels.ravel())[1:]
    assert n >= 1 and (sizes >= k).all()
    assert labels[30, 30] > 0  # the real lesion stays
    # Chance clusters of the shuffled background: the largest of 200 independent draws of the
    # same density is below k about 95% of the time (here: at most 10% above it).
    over = 0
    for seed in range(1, 41):
        shuffled = _noisy_slide(0.2, seed)
        shuffled[26:34, 26:34] = np.where(np.random.default_rng(seed).random((8, 8)) < 0.2,
                                          0.95, 0.05)  # fmt: skip
        lab, m = ndimage.label(lesion_mask(shuffled, PostProcess(1.0, 0.5, 0.5, 1)))
        over += bool(m) and int(np.bincount(lab.ravel())[1:].max()) >= k
    assert over <= 4


def test_a_clean_slide_keeps_the_fixed_minimum_and_zero_shuffles_is_off() -> None:
    clean = _noisy_slide(0.0)
    post = PostProcess(sigma=1.0, seed=0.5, grow=0.5, min_tiles=4, shuffles=50)
    assert chance_min_tiles(clean, post) == 4
    off = PostProcess(sigma=1.0, seed=0.5, grow=0.5, min_tiles=4, shuffles=0)
    assert chance_min_tiles(_noisy_slide(0.3), off) == 4
    assert chance_min_tiles(np.full((4, 4), np.nan), post) == 4  # nothing classified
    assert np.array_equal(lesion_mask(clean, post), lesion_mask(clean, off))


def test_a_slide_mostly_taken_by_tumour_keeps_its_lesion() -> None:
    """Chance is measured on the background outside lesions larger than chance: shuffling the
    tumour in with it would make chance larger than the tumour (it did, at 60% of the slide)."""
    rng = np.random.default_rng(1)
    p = np.where(rng.random((60, 60)) < 0.1, 0.95, 0.05).astype(np.float32)
    for rows in (36, 48):  # 60% and 80% of the tissue
        slide = p.copy()
        slide[:rows] = np.where(rng.random((rows, 60)) < 0.85, 0.92, 0.3)
        post = PostProcess(sigma=1.0, seed=0.5, grow=0.5, min_tiles=2, shuffles=50)
        assert chance_min_tiles(slide, post) < 10
        assert lesion_mask(slide, post)[: rows - 2].mean() > 0.95


def _overlapping_tiles(seed: int, rate: float = 0.35, n: int = 64) -> np.ndarray:
    """A map at half a tile's stride (2 x 2 cells a tile) of a slide without tumour: the tissue
    is units of half a tile, tumour-like at ``rate``, and a tile's probability follows the share
    of its 2 x 2 units that look like tumour, so neighbouring tiles share half their pixels and
    their false positives cluster (as a model's do on real tissue)."""
    rng = np.random.default_rng(seed)
    u = (rng.random((n + 1, n + 1)) < rate).astype(np.float64)
    cover = (u[:-1, :-1] + u[1:, :-1] + u[:-1, 1:] + u[1:, 1:]) / 4
    p = np.clip(0.05 + 0.9 * cover + rng.normal(0, 0.05, cover.shape), 0, 1).astype(np.float32)
    p[:4, :4] = np.nan
    return p


def test_sigma_sizes_and_chance_are_in_tiles_whatever_the_stride(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At stride 48 (2 x 2 cells a tile) the settings mean what they mean at stride 96, and
    chance draws the background in blocks: overlapping tiles' false positives cluster, and
    cell-by-cell shuffles made chance clusters far smaller than the real false ones."""
    from scipy import ndimage

    def false_lesions(post: PostProcess) -> int:
        return sum(ndimage.label(lesion_mask(_overlapping_tiles(s), post))[1] for s in range(4))

    post = PostProcess(sigma=1.0, seed=0.5, grow=0.5, min_tiles=2, shuffles=50, tile_cells=2)
    assert (post.sigma_cells, post.cells(2), post.block) == (2.0, 8, 4)
    assert PostProcess(tile_cells=1).block == 1 and PostProcess(tile_cells=3).cells(2) == 18
    as_cells = false_lesions(replace(post, tile_cells=1))  # stride 96's settings on cells
    blocked = false_lesions(post)
    for s in range(4):  # a lesion of 4 x 4 tiles stays
        p = _overlapping_tiles(s)
        p[30:38, 30:38] = 0.9
        assert lesion_mask(p, post)[34, 34]
    monkeypatch.setattr(PostProcess, "block", property(lambda self: 1))
    cell_by_cell = false_lesions(post)  # in tiles, but chance drawn cell by cell
    assert blocked <= 3 < 10 <= cell_by_cell < as_cells  # measured: 2, 14, 62
    assert chance_min_tiles(_noisy_slide(0.0), post) == 2  # in tiles: 8 cells
    with pytest.raises(MetastasisError, match="tile_cells"):
        PostProcess(tile_cells=0)
