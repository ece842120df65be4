"""The hostile-input corpus: one test per case, each asserting the behaviour the README's
"What happens to bad input" promises.

Two kinds of outcome, and nothing else:

* excluded: the file (or index row) is left out, `check` names it, and `train`, `evaluate` and
  `predict` finish, listing it with its problem in `excluded.csv` / `OUT.excluded.csv`;
* fatal: the command stops with exit status 2 and exactly one line on stderr,
  ``metastasis <command>: error: <file>: <problem>``.

Never a traceback, never a file converted into something it is not. The excluded cases share one
Kaggle-layout corpus (made at test time by tests/hostile_corpus.py), checked, trained on (1
epoch), evaluated, predicted and explored (eda) once each, in subprocesses running at the same
time, exactly as a user runs the commands; the fatal cases are checked the same way.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile
from tests import hostile_corpus as hc
from tests.cli_runner import Cli, assert_one_error_line, finish_cli, run_cli, start_cli

from metastasis.data.cache import open_split
from metastasis.data.decode import UNREADABLE, WRONG_MODE, WRONG_SIZE, decode_file, preview_file
from metastasis.data.layouts import open_layout
from metastasis.data.listing import BAD_LABEL, DUPLICATE_ID, MISSING_FILE, printable
from metastasis.engine.trainer import RunResult
from metastasis.errors import DataError

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
N_GOOD = 24  # labelled good patches in the corpus, enough for a stratified 80/20 split


# --- the excluded cases: one bad file each, in train/ and test/ of one corpus -------------------


@dataclass(frozen=True)
class FileCase:
    name: str
    ext: str
    write: Callable[[Path], Path]
    problem: str | None  # the problem recorded; None: the file is used
    detail: str  # regex on the recorded detail
    stem: str = ""  # when the file's stem is not `name`

    @property
    def file_name(self) -> str:
        return f"{self.stem or self.name}{self.ext}"

    @property
    def id(self) -> str:
        return printable(self.stem or self.name)


FILE_CASES = [
    FileCase("truncated_tif", ".tif", hc.truncated_tif, UNREADABLE, r"^OSError: .*truncated"),
    FileCase("zero_byte", ".tif", hc.zero_byte, UNREADABLE, r"^empty file \(0 bytes\)$"),
    FileCase(
        "text_named_tif",
        ".tif",
        hc.text_named_tif,
        UNREADABLE,
        r"^not a TIFF, PNG, JPEG, BMP, WEBP image",
    ),
    FileCase(
        "decompression_bomb",
        ".png",
        hc.decompression_bomb,
        WRONG_SIZE,
        r"^400000000 pixels, refused unread \(a possible decompression bomb\)$",
    ),
    FileCase(
        "grey16_tif", ".tif", hc.grey16_tif, WRONG_MODE, r"^mode I;16\w*, expected 8-bit RGB$"
    ),
    FileCase(
        "rgb16_tif", ".tif", hc.rgb16_tif, WRONG_MODE, r"^16-bit samples, expected 8-bit RGB$"
    ),
    FileCase(
        "rgb16_png",
        ".png",
        hc.rgb16_png,
        WRONG_MODE,
        r"^16-bit samples stored as RGB;16B, expected 8-bit RGB$",
    ),
    FileCase("cmyk_jpeg", ".jpg", hc.cmyk_jpeg, WRONG_MODE, r"^mode CMYK, expected 8-bit RGB$"),
    FileCase("greyscale", ".png", hc.greyscale_png, WRONG_MODE, r"^mode L, expected 8-bit RGB$"),
    FileCase("rgba", ".png", hc.rgba_png, WRONG_MODE, r"^mode RGBA, expected 8-bit RGB$"),
    FileCase("palette", ".png", hc.palette_png, WRONG_MODE, r"^mode P, expected 8-bit RGB$"),
    FileCase("size_95x96", ".tif", hc.size_95x96, WRONG_SIZE, r"^95x96, expected 96x96$"),
    FileCase(
        "symlink_loop", ".tif", hc.symlink_loop, UNREADABLE, r"^Too many levels of symbolic links$"
    ),
    # Permissions do not bind root: as root the file is read like any other (and used).
    FileCase(
        "chmod_000",
        ".tif",
        hc.chmod_000,
        None if IS_ROOT else UNREADABLE,
        r"^$" if IS_ROOT else r"^Permission denied$",
    ),
    FileCase("fifo", ".tif", hc.fifo, UNREADABLE, r"^not a regular file$"),
    FileCase("planar_rgb_tif", ".tif", hc.planar_rgb_tif, None, r"^$"),
    FileCase(
        "rgb_extra_sample_tif",
        ".tif",
        hc.rgb_extra_sample_tif,
        WRONG_MODE,
        r"^4 samples per pixel \(RGB \+ 1\), expected 3$",
    ),
    FileCase(
        "jpeg_sof9_huffman",
        ".jpg",
        hc.jpeg_arithmetic_frame_huffman_data,
        UNREADABLE,
        r"^JPEG frame SOF9 declares arithmetic coding but the file holds Huffman tables",
    ),
    FileCase(
        "eps_named_tif",
        ".tif",
        hc.eps_named_tif,
        UNREADABLE,
        r"^not a TIFF, PNG, JPEG, BMP, WEBP image",
    ),
    FileCase(
        "bad_utf8_name",
        ".tif",
        lambda path: hc.bad_utf8_name(path.parent),
        UNREADABLE,
        r"^file name is not valid UTF-8 \(rename the file\)$",
        stem=hc.BAD_UTF8_STEM,
    ),
]

# Index rows of train_labels.csv (each has a valid image in train/).
CSV_BAD_ROWS = {"label_yes": ["yes"], "label_empty": [""], "duplicate_conflict": ["0", "1"]}
# Ids that look like paths; none may reach a file outside train/ (or inside a sub-folder).
PATH_IDS = ["../outside", "train/../outside", "sub/inner", "..", "/"]


@dataclass
class Corpus:
    root: Path
    cache: Path
    good: dict[str, int]  # id -> label of the usable labelled patches
    check: Cli
    report: dict[str, Any]
    train: Cli
    run_dir: Path
    evaluate: Cli
    eval_dir: Path
    predict: Cli
    predictions: Path
    eda: Cli
    eda_report: dict[str, Any]

    def finding(self, split: str, kind: str) -> dict[str, Any]:
        (s,) = [s for s in self.report["splits"] if s["split"] == split]
        found = [f for f in s["findings"] if f["kind"] == kind]
        assert found, f"no {kind} finding in {split}: {s['findings']}"
        return found[0]

    def excluded(self, table: Path) -> pd.DataFrame:
        return pd.read_csv(table, dtype=str, keep_default_na=False).set_index("id")


def _write_corpus(root: Path, skip: tuple[str, ...] = ()) -> dict[str, int]:
    good = {f"good{i:02d}": i % 2 for i in range(N_GOOD)}
    hc.write_good(root / "train", list(good), seed=21)
    hc.write_good(root / "test", [f"tgood{i}" for i in range(4)], seed=22)
    for case in FILE_CASES:
        for split in ("train", "test"):
            if case.name in skip:
                continue
            case.write(root / split / case.file_name)
    hc.write_good(root / "train", list(CSV_BAD_ROWS), seed=23)
    hc.write_good(root / "train" / "sub", ["inner"], seed=24)  # never read: not in train/
    hc.write_good(root, ["outside"], seed=25)  # never read: outside train/
    os.symlink("..", root / "train" / "cycle")  # a folder cycle: must not be followed
    # The CSV: a byte-order mark, extra columns on both sides (the first one holds the opposite
    # of each label, so reading the wrong column would show), then every kind of row.
    rows = [(i, str(lab)) for i, lab in good.items()]
    rows += [(c.name, str(k % 2)) for k, c in enumerate(FILE_CASES) if not c.stem]
    rows += [(i, lab) for i, labs in CSV_BAD_ROWS.items() for lab in labs]
    rows += [(i, "1") for i in [*PATH_IDS, str(root / "outside")]]
    flipped = {"0": "1", "1": "0"}
    text = "scanner,id,label,note\n" + "".join(
        f"{flipped.get(lab, '0')},{i},{lab},x\n" for i, lab in rows
    )
    (root / "train_labels.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    return good


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Corpus:
    base = tmp_path_factory.mktemp("hostile")
    root, cache = base / "kaggle", base / "cache"
    good = _write_corpus(root)
    # eda gets the corpus without its FIFO: it hangs on one (see test_eda_on_a_fifo)
    _write_corpus(base / "kaggle-for-eda", skip=("fifo",))
    run_dir, eval_dir, preds = base / "run", base / "eval", base / "preds.csv"
    opts = ["--no-progress", "--data", str(root)]
    tiny = ["--epochs", "1", "--batch-size", "64", "--seed", "0", "--accelerator", "cpu"]
    first = start_cli(
        [
            ["check", str(root), "--no-progress", "--json", str(base / "check.json")],
            ["train", *opts, *tiny, "--out", str(run_dir)],
            ["eda", str(base / "kaggle-for-eda"), "--out", str(base / "eda"), "--no-progress"],
        ],
        cache,
    )
    trained: RunResult = request.getfixturevalue("trained_run")  # meanwhile, if not yet done
    ckpt_opts = [*opts, "--checkpoint", str(trained.run_dir), "--device", "cpu"]
    second = start_cli(
        [
            ["evaluate", *ckpt_opts, "--split", "train", "--out", str(eval_dir)],
            ["predict", *ckpt_opts, "--out", str(preds)],
        ],
        cache,
    )
    check, train, eda = finish_cli(first)
    evaluate, predict = finish_cli(second)
    report = json.loads((base / "check.json").read_text()) if check.rc == 0 else {}
    eda_json = base / "eda" / "eda.json"
    eda_report = json.loads(eda_json.read_text()) if eda_json.is_file() else {}
    return Corpus(
        root=root,
        cache=cache,
        good=good,
        check=check,
        report=report,
        train=train,
        run_dir=run_dir,
        evaluate=evaluate,
        eval_dir=eval_dir,
        predict=predict,
        predictions=preds,
        eda=eda,
        eda_report=eda_report,
    )


def test_every_command_finishes_on_the_corpus(corpus: Corpus) -> None:
    for cli in (corpus.check, corpus.train, corpus.evaluate, corpus.predict, corpus.eda):
        cli.assert_no_traceback()
        assert cli.rc == 0, (cli.args, cli.stderr)
    assert "Problems found:" in corpus.check.stdout
    assert re.search(r"WARNING \d+ files excluded .*excluded\.csv", corpus.train.stderr)
    assert "could not be predicted" in corpus.predict.stderr


@pytest.mark.parametrize("case", FILE_CASES, ids=lambda c: c.name)
def test_bad_image_file(case: FileCase, corpus: Corpus) -> None:
    """Named by `check`; excluded (with its problem) by train, evaluate and predict; or, for a
    file that is fine after all (chmod 000 as root), used like any other."""
    # the decoder itself, on the train/ copy (a bad name is the listing's business, not its)
    if case.problem is not None and case.name != "bad_utf8_name":
        _, problem, detail = decode_file(corpus.root / "train" / case.file_name)
        assert problem == case.problem and re.search(case.detail, detail), detail
    tables = {
        "train": corpus.excluded(corpus.run_dir / "excluded.csv"),
        "evaluate": corpus.excluded(corpus.eval_dir / "excluded.csv"),
        "predict": corpus.excluded(Path(f"{corpus.predictions}.excluded.csv")),
    }
    used = {
        "train": set(pd.read_csv(corpus.run_dir / "splits.csv", dtype=str)["id"]),
        "evaluate": set(pd.read_csv(corpus.eval_dir / "predictions.csv", dtype=str)["id"]),
        "predict": set(pd.read_csv(corpus.predictions, dtype=str)["id"]),
    }
    for command, table in tables.items():
        if case.problem is None:
            assert case.id not in table.index and case.id in used[command], command
            continue
        assert case.id not in used[command], command
        row = table.loc[case.id]
        folder = "test" if command == "predict" else "train"
        assert row["source"] == f"{folder}/{printable(case.file_name)}", command
        assert row["problem"] == case.problem, (command, row["detail"])
        assert re.search(case.detail, row["detail"]), (command, row["detail"])
    for split in ("train", "test"):
        named = f"{split}/{printable(case.file_name)}"
        eda = corpus.eda_report["integrity"]["splits"][split]
        if case.problem is None:
            assert named not in json.dumps(corpus.report["splits"]) + json.dumps(eda)
            continue
        examples = corpus.finding(split, case.problem)["examples"]
        assert any(e.startswith(f"{named} (") for e in examples), examples
        if case.name != "fifo":  # eda runs without it (test_eda_on_a_fifo)
            (found,) = [f for f in eda if f["kind"] == case.problem]
            assert any(e.startswith(f"{named} (") for e in found["examples"]), found


def test_csv_with_byte_order_mark_is_read(corpus: Corpus) -> None:
    assert (corpus.root / "train_labels.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    splits = pd.read_csv(corpus.run_dir / "splits.csv", dtype={"id": str})
    assert set(splits["id"]) >= set(corpus.good)  # the first row, after the mark, included


def test_csv_extra_columns_are_ignored(corpus: Corpus) -> None:
    """The first extra column holds the opposite label: the labels used are the `label` ones."""
    splits = pd.read_csv(corpus.run_dir / "splits.csv", dtype={"id": str})
    got = dict(zip(splits["id"], splits["truth"]))
    assert {i: got[i] for i in corpus.good} == corpus.good
    preds = pd.read_csv(corpus.eval_dir / "predictions.csv", dtype={"id": str})
    got = dict(zip(preds["id"], preds["truth"]))
    assert {i: got[i] for i in corpus.good} == corpus.good


@pytest.mark.parametrize("row", ["label_yes", "label_empty"])
def test_csv_label_other_than_0_or_1(row: str, corpus: Corpus) -> None:
    (label,) = CSV_BAD_ROWS[row]
    assert f"{row} (label {label!r})" in corpus.finding("train", BAD_LABEL)["examples"]
    for table in (corpus.run_dir / "excluded.csv", corpus.eval_dir / "excluded.csv"):
        excluded = corpus.excluded(table)
        assert excluded.loc[row, "problem"] == BAD_LABEL
        assert excluded.loc[row, "detail"] == f"label {label!r}"
        assert excluded.loc[row, "source"] == f"train/{row}.tif"
    assert row not in set(pd.read_csv(corpus.run_dir / "splits.csv", dtype=str)["id"])


def test_csv_duplicate_ids_with_conflicting_labels(corpus: Corpus) -> None:
    assert corpus.finding("train", DUPLICATE_ID)["examples"] == ["duplicate_conflict"]
    excluded = corpus.excluded(corpus.run_dir / "excluded.csv")
    assert excluded.loc["duplicate_conflict", "problem"] == DUPLICATE_ID
    assert excluded.loc["duplicate_conflict", "detail"] == (
        "listed 2 times in train_labels.csv (labels '0', '1')"
    )
    assert "duplicate_conflict" not in set(pd.read_csv(corpus.run_dir / "splits.csv")["id"])


def test_csv_ids_that_look_like_paths_never_reach_outside_train(corpus: Corpus) -> None:
    """Ids are matched against the names of the files in train/, never joined into a path."""
    missing = corpus.finding("train", MISSING_FILE)
    assert set(missing["examples"]) == {*PATH_IDS, str(corpus.root / "outside")}
    listing = open_layout(corpus.root).listing("train")
    for it in listing.items:
        assert it.path is not None and it.path.parent == corpus.root / "train"
    assert {e.path.parent for e in listing.excluded if e.path} == {corpus.root / "train"}
    for table in (corpus.run_dir / "excluded.csv", corpus.eval_dir / "excluded.csv"):
        sources = pd.read_csv(table, dtype=str)["source"]
        assert all(s.startswith("train/") and ".." not in s for s in sources)
    used = pd.read_csv(corpus.run_dir / "splits.csv", dtype=str)["id"]
    assert not {"outside", "inner", *PATH_IDS} & set(used)
    accepted = [c for c in FILE_CASES if c.problem is None]  # planar TIFF; chmod 000 as root
    assert len(used) == N_GOOD + len(accepted)


def test_folder_cycle_is_not_followed(corpus: Corpus) -> None:
    """train/cycle -> .. : listing stays one level deep, so it neither hangs nor reads ../."""
    assert (corpus.root / "train" / "cycle" / "train" / "cycle").is_dir()
    assert corpus.check.rc == 0 and "cycle/" not in json.dumps(corpus.report)


def test_eda_never_opens_files_named_by_missing_ids(corpus: Corpus) -> None:
    findings = corpus.eda_report["integrity"]["splits"]["train"]
    (missing,) = [f for f in findings if f["kind"] == MISSING_FILE]
    assert "figure" not in missing  # nothing of a missing file can be shown


def test_eda_on_a_fifo(tmp_path: Path) -> None:
    root = hc.kaggle(tmp_path / "k")
    hc.fifo(root / "train" / "fifo.tif")
    (cli,) = run_cli([["eda", str(root), "--out", str(tmp_path / "eda")]], tmp_path / "c", 60)
    cli.assert_no_traceback()
    assert cli.rc == 0


# --- the fatal cases: the whole data set cannot be read -----------------------------------------


def _kaggle_with_csv(text: bytes) -> Callable[[Path], tuple[Path, Path]]:
    def make(root: Path) -> tuple[Path, Path]:
        hc.kaggle(root)
        (root / "train_labels.csv").write_bytes(text)
        return root, root / "train_labels.csv"

    return make


def _pcam_with(change: Callable[[Path, Path], Path]) -> Callable[[Path], tuple[Path, Path]]:
    def make(root: Path) -> tuple[Path, Path]:
        x, y = hc.pcam(root)
        return root, change(x, y)

    return make


def _truncate(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _corrupt_gzip(x: Path, y: Path) -> Path:
    gz = x.with_name(x.name + ".gz")
    data = bytearray(gzip.compress(x.read_bytes()))
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # damage the deflate stream
    gz.write_bytes(bytes(data))
    x.unlink()
    return gz


def _data_symlink_loop(root: Path) -> tuple[Path, Path]:
    root.mkdir(parents=True)
    loop = root / "data"
    os.symlink("data", loop)
    return loop, loop


FATAL_CASES: dict[str, tuple[Callable[[Path], tuple[Path, Path]], str]] = {
    # name: (make -> (path given to the command, file named in the error), problem regex)
    "csv_no_header": (
        _kaggle_with_csv(b"good0,0\ngood1,1\n"),
        r"expected columns id,label, found good0,0 \(no header line\? .*add id,label above it\)$",
    ),
    "csv_missing_label_column": (
        _kaggle_with_csv(b"id,target\ngood0,0\n"),
        r"expected columns id,label, found id,target$",
    ),
    "csv_ragged_row": (
        _kaggle_with_csv(b"id,label\ngood0,0\ngood1,1,extra\n"),
        r"cannot parse: .*Expected 2 fields in line 3, saw 3$",
    ),
    "csv_not_utf8": (
        _kaggle_with_csv("id,label\nnaïve,0\n".encode("latin-1")),
        r"not UTF-8 text \(invalid continuation byte at byte 11\)$",
    ),
    "csv_empty": (_kaggle_with_csv(b""), r"empty file; expected a header line id,label$"),
    "h5_wrong_shape": (
        _pcam_with(lambda x, y: hc.write_h5(x, "x", np.zeros((4, 96, 96), np.uint8))),
        r"dataset 'x' is \(4, 96, 96\) uint8, expected N x 96 x 96 x 3 uint8$",
    ),
    "h5_wrong_dtype": (
        _pcam_with(lambda x, y: hc.write_h5(x, "x", np.zeros((4, 96, 96, 3), np.float32))),
        r"dataset 'x' is \(4, 96, 96, 3\) float32, expected N x 96 x 96 x 3 uint8$",
    ),
    "h5_float_labels": (
        _pcam_with(lambda x, y: hc.write_h5(y, "y", np.full((4, 1, 1, 1), 0.7, np.float32))),
        r"dataset 'y' is float32, expected integer labels 0 and 1$",
    ),
    "h5_length_mismatch": (
        _pcam_with(lambda x, y: hc.write_h5(y, "y", np.zeros((3, 1, 1, 1), np.uint8))),
        r"dataset 'y' is \(3, 1, 1, 1\), expected 4 x 1 x 1 x 1 to match .*_x\.h5$",
    ),
    "h5_truncated": (
        _pcam_with(lambda x, y: _truncate(x)),
        r"not a readable HDF5 file \(.*truncated file",
    ),
    "h5_not_hdf5": (
        _pcam_with(lambda x, y: hc.text_named_tif(x)),
        r"not a readable HDF5 file \(.*signature",
    ),
    "h5_x_is_a_group": (
        _pcam_with(lambda x, y: hc.write_h5(x, "x", group=True)),
        r"'x' is a Group, expected a dataset$",
    ),
    "h5_gz_corrupt": (_pcam_with(_corrupt_gzip), r"cannot decompress: "),
    "h5_external_link": (
        _pcam_with(lambda x, y: hc.h5_external_link(x, "x")),
        r"'x' is an external link to elsewhere\.h5:/x; refused: a data file must hold its data",
    ),
    "h5_soft_link": (
        _pcam_with(lambda x, y: hc.h5_soft_link(x, "x")),
        r"'x' is a soft link to /real; refused",
    ),
    "h5_external_storage_fifo": (
        _pcam_with(lambda x, y: hc.h5_external_storage_fifo(x, "x")),
        r"'x' keeps its data in external files; refused",
    ),
    "h5_virtual": (
        _pcam_with(lambda x, y: hc.h5_virtual(x, "x")),
        r"'x' is a virtual dataset \(made of other files\); refused",
    ),
    "h5_declared_not_stored_chunked": (
        _pcam_with(lambda x, y: hc.h5_declared_only(x, "x")),
        r"dataset 'x' declares 2,000,000 rows but stores 0 of its 2,000,000 chunks; "
        r"refused \(incomplete file\)$",
    ),
    "h5_declared_not_stored_contiguous": (
        _pcam_with(lambda x, y: hc.h5_declared_only(x, "x", chunked=False)),
        r"dataset 'x' declares 2,000,000 rows \(55,296,000,000 bytes\) but stores 0 bytes",
    ),
    "data_path_symlink_loop": (_data_symlink_loop, r"symbolic link to nothing"),
}


@dataclass
class FatalRuns:
    files: dict[str, Path]  # case -> the file the error must name
    check: dict[str, Cli]  # case -> `metastasis check` on it
    train: Cli  # on csv_no_header
    predict: Cli  # on h5_truncated
    base: Path


@pytest.fixture(scope="session")
def fatal(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> FatalRuns:
    """Every fatal case checked, plus `train` and `predict` on one each, all at once."""
    base = tmp_path_factory.mktemp("fatal")
    data, files = {}, {}
    for name, (make, _) in FATAL_CASES.items():
        data[name], files[name] = make(base / name)
    train = ["train", "--data", str(data["csv_no_header"]), "--out", str(base / "run")]
    commands = [["check", str(data[name])] for name in FATAL_CASES] + [train]
    first = start_cli([[*c, "--no-progress"] for c in commands], base / "cache")
    trained: RunResult = request.getfixturevalue("trained_run")
    predict = ["predict", "--checkpoint", str(trained.run_dir), "--device", "cpu", "--no-progress"]
    predict += ["--data", str(data["h5_truncated"]), "--out", str(base / "p.csv")]
    second = start_cli([predict], base / "cache")
    runs = finish_cli(first) + finish_cli(second)
    return FatalRuns(files, dict(zip(FATAL_CASES, runs)), runs[-2], runs[-1], base)


@pytest.mark.parametrize("name", FATAL_CASES)
def test_unreadable_data_set_stops_with_one_line(name: str, fatal: FatalRuns) -> None:
    cli = fatal.check[name]
    assert cli.stdout == ""
    assert_one_error_line(cli, "check", fatal.files[name], FATAL_CASES[name][1])


def test_train_and_predict_stop_with_one_line(fatal: FatalRuns) -> None:
    """The same single line from the commands that use the data (one fatal case each)."""
    files = fatal.files
    assert_one_error_line(fatal.train, "train", files["csv_no_header"], r"no header line\?")
    assert_one_error_line(fatal.predict, "predict", files["h5_truncated"], r"truncated file")
    run = fatal.base / "run"
    assert not run.exists() or not any(run.iterdir())
    assert not (fatal.base / "p.csv").exists()


# --- the same rules, closer up -------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip-chunks"])
def test_damaged_hdf5_anywhere_is_one_data_error(tmp_path: Path, compressed: bool) -> None:
    """Cut short at any point: a DataError naming the file. Overwritten with garbage: that
    DataError, or (garbage inside raw pixel bytes cannot be told from pixels) a cache; never
    anything else."""
    imgs, labels = hc.patches(8, seed=3)
    src = tmp_path / "src"
    x_name = "camelyonpatch_level_2_split_test_x.h5"
    y = hc.write_h5(src / x_name.replace("_x", "_y"), "y", labels.reshape(8, 1, 1, 1))
    with h5py.File(src / x_name, "w") as f:
        gz = "gzip" if compressed else None
        f.create_dataset("x", data=imgs, chunks=(2, 96, 96, 3), compression=gz)
    data = (src / x_name).read_bytes()
    garbage = bytes(range(256)) * 4
    for k, at in enumerate(np.linspace(0.02, 0.98, 12)):
        cut = int(len(data) * at)
        for name, damaged in (
            ("cut", data[:cut]),
            ("junk", data[:cut] + garbage + data[cut + 1024 :]),
        ):
            folder = tmp_path / f"{name}{k}"
            folder.mkdir()
            shutil.copy(y, folder)
            (folder / x_name).write_bytes(damaged)
            try:
                open_split(folder, cache_root=tmp_path / "cache", progress=False)
            except DataError as exc:
                assert str(exc).startswith(f"{folder / x_name}: ") and "\n" not in str(exc)
            else:
                assert name == "junk", f"a file cut at {at:.0%} was used"


def test_decompression_bomb_is_refused_from_the_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoding 20000x20000 pixels would take seconds and 400 MB; the header alone decides:
    no pixel of either file is ever decoded (Pillow's load() is never called)."""
    bomb = hc.decompression_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200_000
    big = hc.decompression_bomb(tmp_path / "big.png", side=9000)  # under Pillow's limit
    loads: list[object] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: loads.append(im) or real_load(im))
    assert decode_file(bomb)[:2] == (None, WRONG_SIZE)
    assert decode_file(big)[1:] == (WRONG_SIZE, "9000x9000, expected 96x96")
    assert loads == []


def test_postscript_is_never_rendered(tmp_path: Path) -> None:
    """Pillow would identify this as EPS and run Ghostscript to load it; we never parse it."""
    path = hc.eps_named_tif(tmp_path / "x.tif")
    with Image.open(path) as im:  # what an unrestricted open makes of it
        assert im.format == "EPS"
    assert decode_file(path)[:2] == (None, UNREADABLE)


def test_preview_is_safe_for_every_bad_file(tmp_path: Path) -> None:
    """decode.preview_file, for reports: the same guards, and it shows what can be shown."""
    for case in FILE_CASES:
        path = case.write(tmp_path / case.file_name)
        shown = preview_file(path)
        if case.name in (
            "zero_byte",
            "text_named_tif",
            "decompression_bomb",
            "symlink_loop",
        ) or case.name in ("fifo", "eps_named_tif", "truncated_tif"):
            assert shown is None, case.name
        elif case.name != "chmod_000" or IS_ROOT:
            assert shown is not None and shown.dtype == np.uint8 and shown.shape[2] == 3, case.name


def test_16_bit_rgb_is_never_reduced_to_8_bits(tmp_path: Path) -> None:
    """Pillow opens both as mode RGB, quietly keeping the high byte; we refuse them."""
    for path in (hc.rgb16_tif(tmp_path / "a.tif"), hc.rgb16_png(tmp_path / "a.png")):
        with Image.open(path) as im:
            assert im.mode == "RGB"
        assert decode_file(path)[:2] == (None, WRONG_MODE)


def test_header_case_spaces_and_label_spaces_are_accepted(tmp_path: Path) -> None:
    root = hc.kaggle(tmp_path / "k", n_good=2)
    (root / "train_labels.csv").write_text(" ID , Label \r\ngood0, 0\r\ngood1,1 \r\n")
    listing = open_layout(root).listing("train")
    assert [(it.id, it.label) for it in listing.items] == [("good0", 0), ("good1", 1)]
    assert not listing.findings


def _deny(monkeypatch: pytest.MonkeyPatch, target: Any, name: str, path: Path) -> None:
    """As root, chmod 000 does not stop reading: make ``target.name`` fail as it would."""
    real = getattr(target, name)

    def denied(self_or_path: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(self_or_path) == path:
            raise PermissionError(13, "Permission denied", str(path))
        return real(self_or_path, *args, **kwargs)

    monkeypatch.setattr(target, name, denied)


def test_permission_denied_file_is_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What chmod 000 does for everyone but root (the corpus case asserts root's behaviour)."""
    path = hc.chmod_000(tmp_path / "x.tif")
    if IS_ROOT:
        _deny(monkeypatch, Image, "open", path)
    assert decode_file(path)[:2] == (None, UNREADABLE)
    assert decode_file(path)[2] == "Permission denied"


def test_unlistable_folder_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = hc.kaggle(tmp_path / "k")
    os.chmod(root / "train", 0)
    if IS_ROOT:
        _deny(monkeypatch, Path, "iterdir", root / "train")
    try:
        with pytest.raises(DataError, match=r"train: cannot list folder \(Permission denied\)$"):
            open_layout(root).listing("train")
    finally:
        os.chmod(root / "train", 0o755)


def test_file_names_differing_only_in_extension_are_duplicates(tmp_path: Path) -> None:
    """train/a.tif and train/a.png are both id "a": neither is guessed, both are excluded."""
    root = hc.kaggle(tmp_path / "k")
    Image.fromarray(hc.rgb(9)).save(root / "train" / "good0.png")
    listing = open_layout(root).listing("train")
    assert "good0" not in [it.id for it in listing.items]
    assert sorted((e.source, e.kind) for e in listing.excluded) == [
        ("train/good0.png", DUPLICATE_ID),
        ("train/good0.tif", DUPLICATE_ID),
    ]
