"""slides.readers: pyramidal TIFFs through tifffile and OpenSlide, plain images, resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.slides.conftest import mosaic, write_pyramid

from metastasis.errors import DataError
from metastasis.slides.readers import open_slide, read_scaled
from metastasis.slides.tiling import choose_level


def test_tifffile_and_openslide_read_the_same_pixels_levels_and_mpp(blob_slide: Path) -> None:
    with open_slide(blob_slide) as tif, open_slide(blob_slide, reader="openslide") as osl:
        assert (tif.name, osl.name) == ("tifffile", "openslide")
        assert tif.dimensions == osl.dimensions == [(1920, 1536), (960, 768), (480, 384)]
        assert tif.mpp == pytest.approx(0.486) and osl.mpp == pytest.approx(0.486)
        assert tif.downsamples == pytest.approx([1, 2, 4])
        for level, (x, y) in [(0, (100, 333)), (1, (250, 130)), (2, (5, 7))]:
            a = tif.read_region(level, x, y, 200, 150)
            b = osl.read_region(level, x, y, 200, 150)
            assert a.bad is None and np.array_equal(a.pixels, b.pixels)
        assert choose_level(tif, 0.972) == 1  # the level at the model's resolution
        assert choose_level(tif, 0.7) == 0  # never a level much coarser than the model
        assert choose_level(tif, 1.8) == 2  # 1.944 is within 10%: enlarged 1.08x
        assert choose_level(tif, 5.0) == 2


def test_regions_outside_the_slide_are_white_and_regions_match_the_written_image(
    tmp_path: Path,
) -> None:
    tissue = np.ones((2, 3), bool)
    img = mosaic(2, 3, tissue, np.zeros_like(tissue), seed=4)
    path = write_pyramid(tmp_path / "s.tiff", img, 0.972, levels=1)
    with open_slide(path) as s:
        assert s.level_count == 1 and s.dimensions == [(288, 192)]
        r = s.read_region(0, -10, 150, 60, 60).pixels
        assert (r[:, :10] == 255).all() and (r[42:] == 255).all()
        assert np.array_equal(r[:42, 10:], img[150:192, 0:50])
        same = read_scaled(s, 0, 20, 30, 96, 96, 96, 96).pixels  # scale 1: an exact copy
        assert np.array_equal(same, img[30:126, 20:116])
        half = read_scaled(s, 0, 0, 0, 192, 192, 96, 96).pixels  # shrunk 2x, antialiased
        expected = img[:192, :192].reshape(96, 2, 96, 2, 3).mean((1, 3))
        assert np.abs(half.astype(float) - expected).mean() < 3


def test_mpp_override_and_a_slide_without_resolution(tmp_path: Path) -> None:
    img = np.full((256, 256, 3), 200, np.uint8)
    path = write_pyramid(tmp_path / "nores.tif", img, 1.0, levels=1, resolution=False)
    with pytest.raises(DataError, match=r"no resolution.*--mpp") as err:
        open_slide(path)
    assert "\n" not in str(err.value) and "nores.tif" in str(err.value)
    with open_slide(path, mpp=0.5) as s:
        assert s.mpp == 0.5
    with_res = write_pyramid(tmp_path / "res.tif", img, 0.25, levels=1)
    with open_slide(with_res, mpp=0.3) as s:
        assert s.mpp == 0.3  # --mpp wins over the file


def test_plain_png_reads_whole_with_dpi_ignored_when_it_is_a_screen_default(
    tmp_path: Path,
) -> None:
    from PIL import Image

    img = np.random.default_rng(0).integers(0, 255, (100, 120, 3)).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png", dpi=(72, 72))
    with pytest.raises(DataError, match="give --mpp"):
        open_slide(tmp_path / "a.png")
    with open_slide(tmp_path / "a.png", mpp=0.972) as s:
        assert s.name == "image" and s.dimensions == [(120, 100)]
        assert np.array_equal(s.read_region(0, 10, 20, 30, 40).pixels, img[20:60, 10:40])


def test_a_jpeg_pyramid_decodes_alike_through_tifffile_and_openslide(tmp_path: Path) -> None:
    tissue = np.ones((3, 4), bool)
    img = mosaic(3, 4, tissue, np.zeros_like(tissue), seed=5)
    path = write_pyramid(tmp_path / "j.tif", img, 0.5, levels=2, compression="jpeg")
    with open_slide(path) as tif, open_slide(path, reader="openslide") as osl:
        assert tif.dimensions == osl.dimensions and osl.mpp == pytest.approx(0.5)
        a = tif.read_region(0, 37, 51, 200, 180).pixels.astype(int)
        b = osl.read_region(0, 37, 51, 200, 180).pixels.astype(int)
        assert np.abs(a - b).mean() < 1.0  # two JPEG decoders, same pixels within rounding
        assert np.abs(a - img[51:231, 37:237]).mean() < 8  # lossy, but the same picture


def test_ome_tiff_pyramid_and_aperio_description_give_the_resolution(tmp_path: Path) -> None:
    import tifffile

    from metastasis.slides.run import slide_id

    img = np.random.default_rng(2).integers(0, 255, (512, 640, 3)).astype(np.uint8)
    ome = tmp_path / "x.ome.tiff"
    with tifffile.TiffWriter(ome, ome=True) as tw:
        tw.write(img, tile=(128, 128), subifds=1, photometric="rgb",
                 metadata={"PhysicalSizeX": 0.25, "PhysicalSizeXUnit": "µm",
                           "PhysicalSizeY": 0.25, "PhysicalSizeYUnit": "µm"})  # fmt: skip
        tw.write(img[::2, ::2], tile=(128, 128), subfiletype=1, photometric="rgb")
    with open_slide(ome) as s:
        assert s.dimensions == [(640, 512), (320, 256)] and s.mpp == pytest.approx(0.25)
        assert np.array_equal(s.read_region(1, 10, 20, 50, 40).pixels, img[::2, ::2][20:60, 10:60])
    assert slide_id(ome) == "x"
    svs_like = tmp_path / "aperio.tif"
    aperio = "Aperio Image Library v12.0.0\n640x512 |AppMag = 40|MPP = 0.2520"
    tifffile.imwrite(svs_like, img, tile=(128, 128), photometric="rgb", description=aperio)
    with open_slide(svs_like) as s:
        assert s.mpp == pytest.approx(0.252)
