import gzip
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from tests.helpers import patches, write_image

from metastasis.data import synthetic
from metastasis.data.cache import CachedSplit, fingerprint, open_cache, open_split
from metastasis.data.layouts import open_layout
from metastasis.errors import DataError


def test_folder_cache_holds_exact_pixels_and_is_reused(
    tmp_path: Path, isolated_cache: Path
) -> None:
    imgs, labels = patches(12)
    for i, (img, lab) in enumerate(zip(imgs, labels)):
        write_image(tmp_path / "data" / str(lab) / f"p{i:02d}.png", img)
    first = open_split(tmp_path / "data", progress=False)
    assert len(first) == 12 and first.labelled and first.ok.all()
    order = [int(i[1:]) for i in first.ids]
    np.testing.assert_array_equal(first.images, imgs[order])
    np.testing.assert_array_equal(first.labels, labels[order])
    assert first.images.dtype == np.uint8 and isinstance(first.images, np.memmap)
    stamp = (first.path / "images.npy").stat().st_mtime_ns
    second = open_split(tmp_path / "data", progress=False)
    assert second.path == first.path
    assert (second.path / "images.npy").stat().st_mtime_ns == stamp
    assert [p.name for p in isolated_cache.iterdir()] == [first.path.name]


def test_changed_source_gets_a_new_cache(tmp_path: Path) -> None:
    imgs, _ = patches(3)
    for i in range(3):
        write_image(tmp_path / "0" / f"p{i}.png", imgs[i])
    before = open_split(tmp_path, progress=False)
    write_image(tmp_path / "0" / "p0.png", imgs[2])
    os.utime(tmp_path / "0" / "p0.png", ns=(1, 1))
    after = open_split(tmp_path, progress=False)
    assert after.path != before.path
    np.testing.assert_array_equal(after.images[0], imgs[2])


def test_bad_files_are_kept_out_and_listed(tmp_path: Path) -> None:
    imgs, _ = patches(3)
    write_image(tmp_path / "1" / "good.png", imgs[0])
    write_image(tmp_path / "1" / "small.png", imgs[1][:50, :50])
    (tmp_path / "1" / "broken.tif").write_bytes(b"II*\x00garbage")
    cached = open_split(tmp_path, progress=False)
    assert list(cached.ids[cached.usable_indices()]) == ["good"]
    excluded = cached.excluded().set_index("id")
    assert excluded.loc["small", "problem"] == "wrong_size"
    assert excluded.loc["broken", "problem"] == "unreadable"
    assert cached.class_counts() == {"0": 0, "1": 1}


def test_parallel_build_matches_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import metastasis.data.cache as cache_mod

    synthetic.write_folder_dataset(tmp_path / "d", 40, seed=5)
    listing = open_layout(tmp_path / "d").listing("d")
    monkeypatch.setattr(cache_mod, "CHUNK", 8)  # 5 chunks, enough to use the process pool
    par = open_cache(listing, tmp_path / "c1", workers=2, progress=False)
    ser = open_cache(listing, tmp_path / "c2", workers=1, progress=False)
    np.testing.assert_array_equal(par.images, ser.images)
    assert list(par.digests) == list(ser.digests)


def test_interrupted_build_is_never_used(tmp_path: Path) -> None:
    synthetic.write_folder_dataset(tmp_path / "d", 6, seed=1)
    listing = open_layout(tmp_path / "d").listing("d")
    root = tmp_path / "cache"
    # What a killed build leaves behind: a hidden temporary folder, no final folder.
    leftover = root / f".folder-d-{fingerprint(listing)}.building-x"
    leftover.mkdir(parents=True)
    (leftover / "images.npy").write_bytes(b"partial")
    cached = open_cache(listing, root, progress=False)
    assert cached.path.name == f"folder-d-{fingerprint(listing)}"
    assert cached.ok.all() and len(cached) == 6


@pytest.mark.parametrize("gz", [False, True])
def test_pcam_h5_and_h5_gz(tmp_path: Path, isolated_cache: Path, gz: bool) -> None:
    x_path, y_path = synthetic.write_pcam_h5(tmp_path, "valid", 20, seed=2, gzip_files=gz)
    assert x_path.name.endswith(".h5.gz" if gz else ".h5")
    cached = open_split(tmp_path, progress=False)
    with h5py.File(_plain(x_path, tmp_path), "r") as fx, h5py.File(_plain(y_path, tmp_path)) as fy:
        expected, labels = fx["x"][:], fy["y"][:].reshape(-1)
    assert cached.meta["layout"] == "pcam-h5" and cached.meta["split"] == "valid"
    np.testing.assert_array_equal(cached.images, expected)
    np.testing.assert_array_equal(cached.labels, labels)
    assert cached.ids[0] == "valid_000000"
    if gz:  # decompressed once, into the cache folder
        assert len(list((isolated_cache / "h5").iterdir())) == 2
    single = open_split(x_path, progress=False)  # one file selects its split
    assert single.path == cached.path


def _plain(path: Path, tmp: Path) -> Path:
    """The HDF5 file itself, decompressing a .gz copy outside the data folder."""
    if path.suffix != ".gz":
        return path
    out = tmp.parent / (tmp.name + "-" + path.name[:-3])
    out.write_bytes(gzip.decompress(path.read_bytes()))
    return out


def _write_h5(path: Path, name: str, data: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=data)


def test_pcam_wrong_shape_dtype_and_length(tmp_path: Path) -> None:
    x = tmp_path / "camelyonpatch_level_2_split_test_x.h5"
    y = tmp_path / "camelyonpatch_level_2_split_test_y.h5"
    _write_h5(x, "x", np.zeros((4, 96, 96), np.uint8))
    _write_h5(y, "y", np.zeros((4, 1, 1, 1), np.uint8))
    with pytest.raises(DataError, match=r"_x.h5: dataset 'x' is \(4, 96, 96\) uint8"):
        open_split(tmp_path, progress=False)
    _write_h5(x, "x", np.zeros((4, 96, 96, 3), np.float32))
    with pytest.raises(DataError, match="expected N x 96 x 96 x 3 uint8"):
        open_split(tmp_path, progress=False)
    _write_h5(x, "x", np.zeros((4, 96, 96, 3), np.uint8))
    _write_h5(y, "y", np.zeros((3, 1, 1, 1), np.uint8))
    with pytest.raises(DataError, match=r"_y.h5: dataset 'y' is \(3, 1, 1, 1\), expected 4"):
        open_split(tmp_path, progress=False)


def test_pcam_truncated_file(tmp_path: Path) -> None:
    x_path, _ = synthetic.write_pcam_h5(tmp_path, "train", 8, seed=0)
    data = x_path.read_bytes()
    x_path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match=x_path.name):
        open_split(tmp_path, progress=False)


def test_cached_split_pickles_without_its_memory_map(tmp_path: Path) -> None:
    import pickle

    synthetic.write_folder_dataset(tmp_path / "d", 4, seed=0)
    cached = open_split(tmp_path / "d", progress=False)
    _ = cached.images
    clone = pickle.loads(pickle.dumps(cached))
    assert isinstance(clone, CachedSplit) and clone._images is None
    np.testing.assert_array_equal(clone.images, cached.images)


def test_gz_that_is_not_gzip(tmp_path: Path) -> None:
    x, y = synthetic.write_pcam_h5(tmp_path, "train", 4, seed=0)
    bad = tmp_path / (x.name + ".gz")
    shutil.copy(x, bad)  # plain HDF5 bytes under a .gz name
    x.unlink()
    (tmp_path / (y.name + ".gz")).write_bytes(gzip.compress(y.read_bytes()))
    y.unlink()
    with pytest.raises(DataError, match="cannot decompress"):
        open_split(tmp_path, progress=False)


def test_a_split_folder_shares_its_cache_with_its_parent(demo_data: Path) -> None:
    """`check DATA` then `train --data DATA/train` decode the training patches once."""
    from_parent = open_split(demo_data, "train", progress=False)
    direct = open_split(demo_data / "train", progress=False)
    assert direct.path == from_parent.path


def test_killed_cache_build_is_rebuilt_and_its_leftovers_removed(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    synthetic.write_folder_dataset(tmp_path / "d", 2000, seed=3)
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "metastasis",
            "check",
            str(tmp_path / "d"),
            "--cache-dir",
            str(cache),
            "--no-progress",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not list(cache.glob(".*.building-*")) and time.monotonic() < deadline:
        assert proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(cache.glob(".*.building-*")), "the build was killed half-way"
    assert not [p for p in cache.iterdir() if not p.name.startswith(".")]  # nothing final
    cached = open_split(tmp_path / "d", cache_root=cache, progress=False)
    assert len(cached) == 2000 and cached.ok.all()
    assert not list(cache.glob(".*.building-*"))  # the dead build's folder is gone
