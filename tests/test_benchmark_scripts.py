"""benchmarks/make_pcam_jpeg.py on tiny official-format PCam HDF5 files written at test time:
class folders of JPEGs named by PCam index, exact duplicates written once, seeded draws, and
one-line refusals."""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tests.helpers import patches
from tests.hostile_corpus import write_h5

import metastasis

ROOT = Path(__file__).resolve().parents[1]


def _script() -> ModuleType:  # benchmarks/ is a folder of scripts, not a package
    spec = importlib.util.spec_from_file_location(
        "make_pcam_jpeg", ROOT / "benchmarks/make_pcam_jpeg.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_pcam_jpeg = _script()


def _write_split(folder: Path, split: str, x: np.ndarray, y: np.ndarray, gz: bool) -> None:
    xp = write_h5(folder / f"camelyonpatch_level_2_split_{split}_x.h5", "x", x)
    yp = write_h5(folder / f"camelyonpatch_level_2_split_{split}_y.h5", "y", y.reshape(-1, 1, 1, 1))
    if gz:  # the official downloads are .h5.gz
        for path in (xp, yp):
            with open(path, "rb") as src, gzip.open(f"{path}.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
            path.unlink()


@pytest.fixture(scope="module")
def pcam(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """train: 12 patches (index 5 a copy of 2); valid (.h5.gz): 6 (index 1 a copy of train 0)."""
    folder = tmp_path_factory.mktemp("pcam")
    x, _ = patches(18, seed=1)
    y = np.array([0, 1] * 9, dtype=np.uint8)
    x[5], y[5] = x[2], y[2]
    x[13], y[13] = x[0], y[0]
    _write_split(folder, "train", x[:12], y[:12], gz=False)
    _write_split(folder, "valid", x[12:], y[12:], gz=True)
    return {"folder": folder, "x": x, "y": y}


def _run(pcam: dict[str, Any], out: Path, *options: str) -> dict[str, Any]:
    cache = out.parent / f"{out.name}-cache"
    return make_pcam_jpeg.main(
        ["--pcam", str(pcam["folder"]), "--out", str(out), "--cache", str(cache), *options]
    )


def _files(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))


def test_writes_class_folders_named_by_index_and_drops_copies(
    pcam: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "pcam-jpeg"
    manifest = _run(pcam, out, "--train", "all", "--valid", "0:6", "--block", "4")
    x, y = pcam["x"], pcam["y"]
    expected = [f"train/{y[i]}/patch{i:07d}.jpg" for i in range(12) if i != 5]
    expected += [f"valid/{y[12 + i]}/patch{i:07d}.jpg" for i in range(6) if i != 1]
    assert _files(out) == sorted(expected)
    for i in (0, 7):  # JPEG of the patch's pixels, at quality 75: close, not equal
        with Image.open(out / f"train/{y[i]}/patch{i:07d}.jpg") as img:
            assert img.format == "JPEG" and img.mode == "RGB" and img.size == (96, 96)
            pixels = np.asarray(img).astype(int)
        assert 0 < np.abs(pixels - x[i]).mean() < 12
    assert manifest == json.loads((out / "pcam_jpeg.json").read_text())
    train, valid = manifest["splits"]["train"], manifest["splits"]["valid"]
    assert train["duplicates_dropped"] == 1 and valid["duplicates_dropped"] == 1
    assert train["written"] == {"0": 6, "1": 5} and valid["written"] == {"0": 3, "1": 2}
    assert valid["source"] == [
        "camelyonpatch_level_2_split_valid_x.h5.gz",
        "camelyonpatch_level_2_split_valid_y.h5.gz",
    ]
    assert manifest["jpeg"]["quality"] == 75
    # the project reads it as class folders, with the labels of the folders
    split = metastasis.open_split(out, "train", cache_root=tmp_path / "cache", progress=False)
    assert len(split) == 11 and split.class_counts() == {"0": 6, "1": 5}


def test_random_draws_are_seeded(pcam: dict[str, Any], tmp_path: Path) -> None:
    runs = {
        name: _run(pcam, tmp_path / name, "--train", "5", *seed)
        for name, seed in (("a", ["--seed", "3"]), ("b", ["--seed", "3"]), ("c", ["--seed", "4"]))
    }
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert a == b != c and len(a) in (4, 5)  # 5 drawn; one may be the copy of index 2
    assert runs["a"]["splits"]["train"]["indices"] == 5
    assert "valid" not in runs["a"]["splits"]


def test_keep_duplicates_writes_every_copy(pcam: dict[str, Any], tmp_path: Path) -> None:
    _run(pcam, tmp_path / "all", "--train", "all", "--valid", "all", "--keep-duplicates")
    assert len(_files(tmp_path / "all")) == 18


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--train", "13"], "the train split has 12 patches"),
        (["--valid", "2:9"], "the valid split has 6 patches"),
        (["--test", "all"], "no camelyonpatch_level_2_split_test_x.h5"),
        ([], "name at least one split"),
        (["--train", "all", "--quality", "100"], "--quality 100"),
    ],
)
def test_refusals_are_one_line(
    pcam: dict[str, Any], tmp_path: Path, options: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        _run(pcam, tmp_path / "out", *options)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_refuses_a_folder_with_files_and_a_bad_range(pcam: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="exists and is not empty"):
        _run(pcam, out, "--train", "all")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(SystemExit) as info:  # argparse: usage and status 2
        _run(pcam, tmp_path / "new", "--train", "5:2")
    assert info.value.code == 2
