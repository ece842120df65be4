"""OpenSlide and broken stored tiles: a region that fails is read again tile by tile, so only
the pixels of the broken JPEG tiles are lost, as with the tifffile reader (an SVS, real files)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.hostile_corpus import svs_with_broken_tiles

from metastasis.slides import run_slides
from metastasis.slides.readers import BACKGROUND, open_slide

pytest.importorskip("openslide")

TILE = 128
# level 2 (1.0 um/px, the level the model reads; 11 x 11 stored tiles): row 1, cols 3 and 4;
# row 4, col 6. Levels 0, 1 and 3 (the thumbnail's) are whole.
BROKEN = ((2, 14), (2, 15), (2, 50))


@pytest.fixture(scope="module")
def svs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = svs_with_broken_tiles(tmp_path_factory.mktemp("svs") / "broken.svs", broken=BROKEN)
    import openslide

    with openslide.OpenSlide(str(path)) as s:
        assert s.properties["openslide.vendor"] == "aperio"
        assert s.level_count == 4 and s.properties["openslide.level[2].tile-width"] == str(TILE)
    return path


def _broken_mask(level: int, x: int, y: int, w: int, h: int, across: int) -> np.ndarray:
    """Where the stored tiles of ``BROKEN`` on ``level`` fall in the region."""
    mask = np.zeros((h, w), bool)
    for lv, index in BROKEN:
        if lv == level:
            ty, tx = divmod(index, across)
            ys = slice(max(ty * TILE - y, 0), max((ty + 1) * TILE - y, 0))
            xs = slice(max(tx * TILE - x, 0), max((tx + 1) * TILE - x, 0))
            mask[ys, xs] = True
    return mask


def test_a_failed_region_loses_only_the_broken_stored_tiles_as_with_tifffile(
    svs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    region = (2, 37, 45, 1000, 700)  # unaligned: the pieces follow the stored tile grid
    caplog.set_level(logging.WARNING, "metastasis.slides.readers.openslide")
    with open_slide(svs, reader="openslide") as s:
        assert s.dimensions[2] == (1344, 1344) and s.mpp == pytest.approx(0.25)
        got = s.read_region(*region)
        again = s.read_region(*region)  # the handle was reopened: it still reads
        whole = s.read_region(3, 0, 0, 672, 672)  # no broken tile: one plain read
    with open_slide(svs, reader="tifffile") as t:
        ref = t.read_region(*region)
    expected = _broken_mask(*region, across=-(-1344 // TILE))
    assert expected.sum() == 3 * TILE * TILE  # all three lie inside the region
    assert got.bad is not None and ref.bad is not None
    assert np.array_equal(got.bad, expected) and np.array_equal(ref.bad, expected)
    assert np.array_equal(again.bad, expected) and np.array_equal(again.pixels, got.pixels)
    assert (got.pixels[expected] == BACKGROUND).all()
    diff = np.abs(got.pixels.astype(np.int16) - ref.pixels.astype(np.int16))
    assert diff[~expected].max() <= 2  # the same JPEG tiles: at most decoder rounding
    assert (got.pixels[~expected] == BACKGROUND).all(-1).mean() < 0.01  # real pixels
    assert whole.bad is None
    warned = [
        r.getMessage() for r in caplog.records if r.name == "metastasis.slides.readers.openslide"
    ]
    assert len(warned) == 2 and all("of 128 x 128 px: 3 failed" in m for m in warned)
    assert all("\n" not in m for m in warned)


def _decode_errors(out: Path) -> int:
    tiles = pd.read_csv(out / "broken" / "tiles.csv")
    return int((tiles["status"] == "decode_error").sum())


def test_a_slide_run_marks_as_many_decode_errors_through_openslide_as_through_tifffile(
    svs: Path, random_checkpoint: Path, tmp_path: Path
) -> None:
    counts = {}
    for reader in ("tifffile", "openslide"):
        table = run_slides([svs], random_checkpoint, tmp_path / reader, engine="torch",
                           reader=reader, progress=False)  # fmt: skip
        assert table["status"].tolist() == ["ok"]
        counts[reader] = _decode_errors(tmp_path / reader)
    classified = pd.read_csv(tmp_path / "openslide" / "broken" / "tiles.csv")["probability"]
    # the broken tiles lie in two blocks of 7 x 7 tiles; read whole (before), 77 tiles
    assert counts["openslide"] == counts["tifffile"] and 0 < counts["tifffile"] <= 30
    assert classified.notna().sum() >= 100
