"""Synthetic PCam-like data: arrays, determinism, centre-dependent labels, writers."""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from metastasis.data import synthetic
from metastasis.data.synthetic import (
    iter_patches,
    make_patches,
    make_tumour_masks,
    write_demo_dataset,
    write_folder_dataset,
    write_kaggle_dataset,
    write_pcam_h5,
)
from metastasis.errors import OutputError


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    return make_patches(1500, seed=3)


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# ----------------------------------------------------------------------------- arrays


def test_shapes_dtypes_and_layout() -> None:
    images, labels = make_patches(10, seed=1)
    assert images.shape == (10, 96, 96, 3) and images.dtype == np.uint8
    assert images.flags.c_contiguous
    assert labels.shape == (10,) and labels.dtype == np.int64
    assert set(np.unique(labels)) <= {0, 1}
    assert images.std() > 10  # not blank
    empty, none = make_patches(0)
    assert empty.shape == (0, 96, 96, 3) and none.shape == (0,)


def test_deterministic_and_prefix_stable() -> None:
    a_img, a_lab = make_patches(10, seed=5)
    b_img, b_lab = make_patches(10, seed=5)
    assert a_img.tobytes() == b_img.tobytes() and np.array_equal(a_lab, b_lab)
    c_img, _ = make_patches(10, seed=6)
    assert not np.array_equal(a_img, c_img)
    long_img, long_lab = make_patches(20, seed=5)  # patch i depends only on (seed, i)
    assert np.array_equal(long_img[:10], a_img) and np.array_equal(long_lab[:10], a_lab)


def test_iter_patches_matches_make_patches() -> None:
    images, labels = make_patches(20, seed=2)
    chunks = list(iter_patches(20, seed=2, chunk=7))
    assert [len(lab) for _, lab in chunks] == [7, 7, 6]
    assert np.array_equal(np.concatenate([img for img, _ in chunks]), images)
    assert np.array_equal(np.concatenate([lab for _, lab in chunks]), labels)


def test_label_fraction(sample: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = sample
    assert abs(labels.mean() - 0.4) < 0.045  # about 3.5 standard errors
    assert make_patches(30, positive_fraction=0.0)[1].sum() == 0
    assert make_patches(30, positive_fraction=1.0)[1].sum() == 30


@pytest.mark.parametrize(
    "kwargs", [{"n": -1}, {"n": 3, "seed": -1}, {"n": 3, "positive_fraction": 1.5}]
)
def test_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        make_patches(**kwargs)  # type: ignore[arg-type]


def test_label_depends_on_centre(sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = sample
    grey = images.astype(np.float32).mean(-1)
    centre = grey[:, 32:64, 32:64].mean((1, 2))
    whole = grey.mean((1, 2))
    centre_gap = centre[labels == 0].mean() - centre[labels == 1].mean()
    whole_gap = whole[labels == 0].mean() - whole[labels == 1].mean()
    assert centre_gap > 15  # tumour cells darken the centre of label-1 patches
    assert abs(whole_gap) < 0.6 * centre_gap  # ... far less visible in the whole-patch mean


def test_tumour_masks_define_the_label() -> None:
    _, labels = make_patches(300, seed=4)
    masks = make_tumour_masks(300, seed=4)
    assert masks.shape == (300, 96, 96) and masks.dtype == bool
    in_centre = masks[:, 32:64, 32:64].any((1, 2))
    assert np.array_equal(in_centre, labels == 1)
    outside_only = np.asarray(masks.any((1, 2)) & ~in_centre)
    assert outside_only[labels == 0].mean() > 0.3  # label 0 often has tumour off-centre


# ----------------------------------------------------------------------------- writers


def test_folder_dataset_round_trip(tmp_path: Path) -> None:
    out = write_folder_dataset(tmp_path / "ds", 12, seed=7)
    images, labels = make_patches(12, seed=7)
    files = sorted(out.glob("*/*.png"))
    assert len(files) == 12
    assert sorted(os.listdir(tmp_path)) == ["ds"]  # no temporary sibling left behind
    for path in files:
        i = int(re.fullmatch(r"synth_7_(\d{7})\.png", path.name)[1])  # type: ignore[index]
        assert int(path.parent.name) == labels[i]
        assert np.array_equal(_read(path), images[i])


def test_folder_dataset_formats_and_refusal(tmp_path: Path) -> None:
    out = write_folder_dataset(tmp_path / "jpg", 4, fmt="jpg")
    assert len(list(out.glob("*/*.jpg"))) == 4
    (tmp_path / "empty").mkdir()
    assert len(list(write_folder_dataset(tmp_path / "empty", 3).glob("*/*.png"))) == 3
    with pytest.raises(OutputError, match="not empty"):
        write_folder_dataset(out, 4)
    with pytest.raises(ValueError):
        write_folder_dataset(tmp_path / "bmp", 4, fmt="bmp")


def test_folder_dataset_crash_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "_write_class_folders", fail)
    with pytest.raises(RuntimeError):
        write_folder_dataset(tmp_path / "ds", 4)
    assert os.listdir(tmp_path) == []


def test_demo_dataset_reused(tmp_path: Path) -> None:
    out = write_demo_dataset(tmp_path / "demo", n_train=8, n_valid=4, seed=1)
    assert len(list((out / "train").glob("*/*.png"))) == 8
    assert len(list((out / "valid").glob("*/*.png"))) == 4
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert write_demo_dataset(out, n_train=8, n_valid=4, seed=1) == out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps
    train = {_read(p).tobytes() for p in (out / "train").glob("*/*.png")}
    valid = {_read(p).tobytes() for p in (out / "valid").glob("*/*.png")}
    assert not train & valid
    with pytest.raises(OutputError, match="other parameters"):
        write_demo_dataset(out, n_train=9, n_valid=4, seed=1)


def test_kaggle_dataset(tmp_path: Path) -> None:
    out = write_kaggle_dataset(tmp_path / "kaggle", n_train=10, n_test=3, seed=2)
    table = pd.read_csv(out / "train_labels.csv", dtype={"id": str})
    assert list(table.columns) == ["id", "label"] and len(table) == 10
    assert table["id"].str.fullmatch(r"[0-9a-f]{40}").all() and table["id"].is_unique
    images, labels = make_patches(10, seed=2, positive_fraction=0.405)
    assert np.array_equal(table["label"].to_numpy(), labels)
    for i, pid in enumerate(table["id"]):
        assert np.array_equal(_read(out / "train" / f"{pid}.tif"), images[i])
    test_ids = {p.stem for p in (out / "test").glob("*.tif")}
    assert len(test_ids) == 3 and not test_ids & set(table["id"])
    assert set(pd.read_csv(out / "sample_submission.csv", dtype={"id": str})["id"]) == test_ids


def test_pcam_h5(tmp_path: Path) -> None:
    x_path, y_path = write_pcam_h5(tmp_path, "valid", 9, seed=1)
    assert x_path.name == "camelyonpatch_level_2_split_valid_x.h5"
    images, labels = make_patches(9, seed=1 + synthetic.VALID_SEED_OFFSET, positive_fraction=0.5)
    with h5py.File(x_path, "r") as fx, h5py.File(y_path, "r") as fy:
        x, y = fx["x"], fy["y"]
        assert x.shape == (9, 96, 96, 3) and x.dtype == np.uint8 and x.compression == "gzip"
        assert y.shape == (9, 1, 1, 1) and y.dtype == np.uint8
        assert np.array_equal(x[:], images) and np.array_equal(y[:, 0, 0, 0], labels)
    with pytest.raises(ValueError):
        write_pcam_h5(tmp_path, "dev", 2)


def test_pcam_h5_gz(tmp_path: Path) -> None:
    plain = write_pcam_h5(tmp_path / "plain", "train", 5, seed=3)
    packed = write_pcam_h5(tmp_path / "gz", "train", 5, seed=3, gzip_files=True)
    written = sorted(os.listdir(tmp_path / "gz"))  # and the marker that says they are drawn
    assert written == sorted([*(p.name + ".gz" for p in plain), "synthetic.json"])
    for h5_path, gz_path, key in zip(plain, packed, "xy", strict=True):
        unpacked = tmp_path / f"unpacked_{key}.h5"
        unpacked.write_bytes(gzip.decompress(gz_path.read_bytes()))
        with h5py.File(h5_path, "r") as a, h5py.File(unpacked, "r") as b:
            assert a[key].shape == b[key].shape and np.array_equal(a[key][:], b[key][:])
