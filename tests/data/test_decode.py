from pathlib import Path

import numpy as np
from PIL import Image

from metastasis.data.decode import (
    UNREADABLE,
    WRONG_MODE,
    WRONG_SIZE,
    decode_file,
    image_extensions,
    pixel_digest,
)


def _rgb(seed: int = 0, size: int = 96) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_valid_tif_round_trips(tmp_path: Path) -> None:
    arr = _rgb()
    Image.fromarray(arr).save(tmp_path / "a.tif")
    out, problem, detail = decode_file(tmp_path / "a.tif")
    assert problem is None and detail == ""
    assert out is not None and out.dtype == np.uint8 and out.shape == (96, 96, 3)
    np.testing.assert_array_equal(out, arr)


def test_truncated_tif_is_unreadable(tmp_path: Path) -> None:
    Image.fromarray(_rgb()).save(tmp_path / "a.tif")
    data = (tmp_path / "a.tif").read_bytes()
    (tmp_path / "a.tif").write_bytes(data[: len(data) // 2])
    out, problem, _ = decode_file(tmp_path / "a.tif")
    assert out is None and problem == UNREADABLE


def test_text_file_named_tif_and_empty_file(tmp_path: Path) -> None:
    (tmp_path / "t.tif").write_text("not an image")
    (tmp_path / "e.tif").write_bytes(b"")
    for name in ("t.tif", "e.tif"):
        out, problem, detail = decode_file(tmp_path / name)
        assert out is None and problem == UNREADABLE and detail


def test_wrong_size_and_modes(tmp_path: Path) -> None:
    Image.fromarray(_rgb(size=50)).save(tmp_path / "small.png")
    Image.fromarray(_rgb()).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(_rgb()).convert("L").save(tmp_path / "grey.png")
    Image.fromarray(np.zeros((96, 96), dtype=np.uint16)).save(tmp_path / "deep.tif")
    assert decode_file(tmp_path / "small.png")[1:] == (WRONG_SIZE, "50x50, expected 96x96")
    assert decode_file(tmp_path / "rgba.png")[1] == WRONG_MODE
    assert decode_file(tmp_path / "grey.png")[1] == WRONG_MODE
    assert decode_file(tmp_path / "deep.tif")[1] == WRONG_MODE


def test_pixel_digest_detects_identical_pixels() -> None:
    a, b = _rgb(1), _rgb(2)
    assert pixel_digest(a) == pixel_digest(a.copy())
    assert pixel_digest(a) != pixel_digest(b)


def test_image_extensions_include_common_formats() -> None:
    assert {".tif", ".tiff", ".png", ".jpg", ".jpeg"} <= image_extensions()


def test_separate_colour_planes_decode_to_the_same_pixels(tmp_path: Path) -> None:
    """PlanarConfiguration 2 is a storage layout, not a conversion: the pixels are exact."""
    from tests import hostile_corpus as hc

    path = hc.planar_rgb_tif(tmp_path / "planar.tif")
    arr, problem, _ = decode_file(path)
    assert problem is None and arr is not None
    np.testing.assert_array_equal(arr, hc.rgb(12))
