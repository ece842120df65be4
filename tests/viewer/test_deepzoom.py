"""viewer.deepzoom: the Deep Zoom geometry agrees with OpenSlide's generator; tiles cut by the
project's readers agree with OpenSlide's; coarse levels of a slide without a pyramid come from
the thumbnail (bounded work); levels and tiles outside the pyramid are refused."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.slides.conftest import mosaic, write_pyramid

from metastasis.viewer import deepzoom
from metastasis.viewer.deepzoom import DeepZoom, TileUnavailable, open_tiles


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


@pytest.mark.parametrize("size", [(1920, 1536), (255, 300), (1, 1), (509, 254)])
def test_geometry_is_openslides(size: tuple[int, int]) -> None:
    openslide = pytest.importorskip("openslide")
    from openslide.deepzoom import DeepZoomGenerator

    generator = DeepZoomGenerator(openslide.ImageSlide(Image.new("RGB", size)), 254, 1)
    dz = DeepZoom(*size)
    assert dz.level_dimensions == list(generator.level_dimensions)
    for level in range(dz.level_count):
        cols, rows = dz.level_tiles(level)
        assert (cols, rows) == generator.level_tiles[level]
        for col, row in {(0, 0), (cols - 1, rows - 1), (cols // 2, 0)}:
            box = dz.tile_box(level, col, row)
            assert box[2:] == generator.get_tile_dimensions(level, (col, row))


@pytest.fixture(scope="module")
def small_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """960 x 768 px, 3 levels, lossless tiles; a red thumbnail.png beside it."""
    tissue = np.ones((4, 5), bool)
    image = mosaic(4, 5, tissue, np.zeros_like(tissue), seed=2).repeat(2, 0).repeat(2, 1)
    folder = tmp_path_factory.mktemp("dz")
    Image.new("RGB", (96, 77), (255, 0, 0)).save(folder / "thumbnail.png")
    write_pyramid(folder / "flat.tif", image, 0.25, levels=1)
    return write_pyramid(folder / "small.tif", image, 0.25)


def test_reader_tiles_agree_with_openslides(small_slide: Path) -> None:
    pytest.importorskip("openslide")
    ours = open_tiles(small_slide, None, None, backend="reader")
    theirs = open_tiles(small_slide, None, None, backend="openslide")
    assert (ours.backend, theirs.backend) == ("reader (tifffile)", "openslide")
    top = ours.dz.level_count - 1
    for level, tolerance in ((top, 2.0), (top - 1, 6.0), (top - 3, 12.0)):
        cols, rows = ours.dz.level_tiles(level)
        for col, row in {(0, 0), (cols - 1, rows - 1)}:
            a, b = _decode(ours.jpeg(level, col, row)), _decode(theirs.jpeg(level, col, row))
            assert a.shape == b.shape == (*ours.dz.tile_box(level, col, row)[:1:-1], 3)
            assert np.abs(a - b).mean() < tolerance, (level, col, row)
    ours.close()
    theirs.close()


@pytest.mark.parametrize("backend", ["reader", "openslide"])
def test_coarse_tiles_of_a_flat_slide_come_from_the_thumbnail(
    small_slide: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "openslide":
        pytest.importorskip("openslide")
    monkeypatch.setattr(deepzoom, "MAX_SOURCE_SIDE", 600)  # a flat 960 px slide as a huge one
    source = open_tiles(small_slide.with_name("flat.tif"), 0.25,
                        small_slide.with_name("thumbnail.png"), backend)  # fmt: skip
    top = source.dz.level_count - 1
    fine = _decode(source.jpeg(top, 0, 0)).mean(axis=(0, 1))
    coarse = _decode(source.jpeg(top - 2, 0, 0)).mean(axis=(0, 1))  # 4 x 255 px > 600
    assert not (fine[0] > 200 and fine[1] < 60)  # tissue, read from the slide
    assert coarse[0] > 200 and coarse[1] < 60 and coarse[2] < 60  # the red thumbnail
    source.close()


def test_levels_and_tiles_outside_the_pyramid_are_refused() -> None:
    dz = DeepZoom(1920, 1536)
    assert dz.level_count == 12 and dz.level_tiles(11) == (8, 7)
    for level, col, row in ((12, 0, 0), (-1, 0, 0), (11, 8, 0), (11, 0, 7), (0, 1, 0)):
        with pytest.raises(TileUnavailable):
            dz.tile_box(level, col, row)
    assert 'Width="1920" Height="1536"' in dz.dzi() and 'TileSize="254"' in dz.dzi()
