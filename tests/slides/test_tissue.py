"""slides.tissue and slides.tiling: the mask finds tissue, not glass; tissue per tile."""

from __future__ import annotations

import numpy as np
import pytest
from tests.helpers import patches

from metastasis.errors import DataError
from metastasis.slides.tiling import Geometry, blocks, tissue_fractions
from metastasis.slides.tissue import tissue_mask


def _thumb() -> np.ndarray:
    """Glass (grey, slight noise) with a 40 x 60 tissue block at rows 20-60, cols 30-90, a
    2-pixel speck, and a 3 x 3 glass hole inside the tissue."""
    rng = np.random.default_rng(0)
    img = rng.integers(236, 246, (100, 120, 3)).astype(np.uint8)
    tissue = np.asarray(patches(1, seed=2)[0][0])[:40, :60]
    img[20:60, 30:90] = tissue
    img[80:82, 10:11] = (150, 60, 160)  # speck
    img[40:43, 50:53] = 240  # small hole
    img[0:5, 0:120] = 5  # black scanner border
    return img


def test_mask_covers_the_tissue_and_drops_specks_glass_and_black_borders() -> None:
    mask, threshold = tissue_mask(_thumb(), min_area_px=16)
    assert 0.05 <= threshold <= 0.15
    assert mask[20:60, 30:90].mean() > 0.9 and mask[40:43, 50:53].all()  # hole filled
    outside = mask.copy()
    outside[18:62, 28:92] = False
    assert not outside.any()  # no glass, speck or border


def test_all_glass_gives_an_empty_mask_and_the_threshold_is_an_option() -> None:
    glass = np.random.default_rng(1).integers(236, 246, (50, 50, 3)).astype(np.uint8)
    mask, _ = tissue_mask(glass)
    assert not mask.any()
    everything, t = tissue_mask(_thumb(), threshold=0.0, min_area_px=0)
    assert t == 0.0 and everything[20:60, 30:90].all()
    with pytest.raises(DataError, match="between 0 and 1"):
        tissue_mask(glass, threshold=2.0)


def test_tissue_fractions_and_blocks_on_a_known_mask() -> None:
    # model at 1 um/px, level 0 at 0.5: 2 level-0 px per model px; thumbnail 8 level-0 px/px
    geo = Geometry(0, 0.5, 1.0, 0.5, 1.0, patch=96, stride=48, rows=4, cols=5)
    mask = np.zeros((60, 80), bool)
    mask[:, :24] = True  # level-0 x < 192 = model x < 96: the first tile column exactly
    frac = tissue_fractions(geo, mask, thumb_downsample=8.0)
    assert frac.shape == (4, 5)
    assert np.allclose(frac[:, 0], 1.0) and np.allclose(frac[:, 1], 0.5)
    assert np.allclose(frac[:, 2:], 0.0)
    todo = blocks(geo, frac > 0.25, n=2)
    assert [(b.row, b.col, b.side) for b in todo] == [(0, 0, 144), (2, 0, 144)]


def test_pale_tissue_next_to_stained_tissue_is_kept() -> None:
    """Tissue's saturation spreads far wider than glass's: a pale region (fat, loose stroma;
    saturation about 0.08) beside a stained one (about 0.45) on faintly tinted glass (about
    0.02). A split by variance (Otsu) falls between the two tissues and drops the pale one; the
    threshold where the glass peak ends keeps both and still no glass."""
    rng = np.random.default_rng(3)
    img = np.empty((120, 120, 3), np.float32)
    img[:] = (238, 236, 240)  # glass: saturation about 0.02
    img[10:110, 10:60] = (200, 110, 170)  # stained tissue: saturation 0.45
    img[10:110, 60:110] = (236, 217, 226)  # pale tissue: saturation 0.08
    img = np.clip(img + rng.normal(0, 2.0, img.shape), 0, 255).astype(np.uint8)
    mask, threshold = tissue_mask(img, min_area_px=16)
    assert 0.05 <= threshold < 0.08
    assert mask[12:108, 12:58].all() and mask[12:108, 62:108].mean() > 0.95
    outside = mask.copy()
    outside[8:112, 8:112] = False
    assert not outside.any()
