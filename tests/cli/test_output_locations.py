"""Outputs that cannot be written, as a user meets them on the command line: a file where a
folder is wanted (or the reverse), an input of the same command, a read-only mount, a full disk.

Each ends with exit status 2 and one line naming the path, before any work where it can be known
in advance, and leaves no half-written file under a final name. The commands run as subprocesses,
all at once; the mounts (tests/mounts.py) need root and are skipped elsewhere.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.cli_runner import Cli, assert_one_error_line, finish_cli, start_cli
from tests.mounts import IS_ROOT, tmpfs

from metastasis.data import synthetic
from metastasis.engine.trainer import RunResult


@dataclass
class Case:
    args: list[str]
    file: Path  # the path the error line names
    problem: str  # regex on the rest of the line


@dataclass
class Places:
    kaggle: Path
    ckpt: Path
    a_file: Path
    a_folder: Path
    ro: Path | None
    small: Path | None
    full: Path | None


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory, trained_run: RunResult) -> Iterator[Places]:
    base = tmp_path_factory.mktemp("outputs")
    kaggle = synthetic.write_kaggle_dataset(base / "kaggle", n_train=12, n_test=4, seed=5)
    ckpt = base / "checkpoint.pt"  # a private copy: the shared run stays untouched
    shutil.copy(trained_run.run_dir / "checkpoint.pt", ckpt)
    a_file = base / "a_file"
    a_file.write_text("not a folder\n")
    (base / "a_folder").mkdir()
    with contextlib.ExitStack() as mounts:
        ro = small = full = None
        if IS_ROOT:
            ro = mounts.enter_context(tmpfs(base / "ro", "1m", read_only=True))
            small = mounts.enter_context(tmpfs(base / "small", "1m"))
            full = mounts.enter_context(tmpfs(base / "full", "1m"))
        yield Places(kaggle, ckpt, a_file, base / "a_folder", ro, small, full)


TRAIN = ["-q", "train", "--epochs", "1", "--batch-size", "4", "--seed", "0", "--data"]


def _cases(p: Places) -> dict[str, Case]:
    predict = ["predict", "--checkpoint", str(p.ckpt), "--data", str(p.kaggle), "--device", "cpu"]
    labels = p.kaggle / "train_labels.csv"
    cases = {
        "predict_out_is_a_folder": Case(
            [*predict, "--out", str(p.a_folder)], p.a_folder, r"is a folder; expected a file"
        ),
        "predict_out_is_the_labels": Case(
            [*predict, "--out", str(labels)], labels, r"is an input of this command; refusing"
        ),
        "predict_out_is_the_checkpoint": Case(
            [*predict, "--out", str(p.ckpt)], p.ckpt, r"is an input of this command; refusing"
        ),
        "evaluate_out_is_a_file": Case(
            ["evaluate", *predict[1:], "--split", "train", "--out", str(p.a_file)],
            p.a_file,
            r"is a file; expected a folder to write into$",
        ),
        "check_json_under_a_file": Case(
            ["check", str(p.kaggle), "--json", str(p.a_file / "report.json")],
            p.a_file,
            r"cannot create it: .*a_file is not a folder$",
        ),
        "check_json_is_the_labels": Case(
            ["check", str(p.kaggle), "--json", str(labels)], labels, r"is an input of this"
        ),
        "cache_dir_is_a_file": Case(
            ["check", str(p.kaggle), "--cache-dir", str(p.a_file)],
            p.a_file,
            r"cache folder is a file, not a folder$",
        ),
        "train_out_is_a_file": Case(
            [*TRAIN, str(p.kaggle), "--out", str(p.a_file)],
            p.a_file,
            r"run folder is a file, not a folder$",
        ),
    }
    if p.ro is not None and p.small is not None and p.full is not None:
        cases |= {
            "predict_out_read_only": Case(
                [*predict, "--out", str(p.ro / "p.csv")], p.ro, r"read-only file system$"
            ),
            "cache_dir_read_only": Case(
                ["check", str(p.kaggle), "--cache-dir", str(p.ro)],
                p.ro,
                r"cannot write the cache here: read-only file system$",
            ),
            "cache_dir_too_small": Case(  # 12 patches = 0.3 MB on a disk with 0.1 MB left
                ["check", str(p.kaggle), "--cache-dir", str(p.full / "cache")],
                p.full / "cache",
                r"the cache of 12 patches needs 0\.3 MiB, only 0\.1 MiB free on that disk$",
            ),
            "train_out_on_a_full_disk": Case(  # the seed's CNN checkpoint is 6.8 MB
                [*TRAIN, str(p.kaggle), "--out", str(p.small / "run")],
                p.small / "run" / "checkpoint.pt",
                r"cannot write: no space left on the disk$",
            ),
        }
    return cases


@pytest.fixture(scope="module")
def runs(places: Places, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Cli]:
    cases = _cases(places)
    if places.full is not None:  # leave the cache 0.1 MB
        (places.full / "cache").mkdir()
        with open(places.full / "filler", "wb") as fh:
            fh.write(b"\0" * (1024 * 1024 - 32 * 4096))
    before = (places.kaggle / "train_labels.csv").read_bytes()
    cache = tmp_path_factory.mktemp("cache")
    started = start_cli([[*c.args, "--no-progress"] for c in cases.values()], cache)
    runs = dict(zip(cases, finish_cli(started)))
    assert (places.kaggle / "train_labels.csv").read_bytes() == before
    return runs


MOUNT_CASES = ["predict_out_read_only", "cache_dir_read_only", "cache_dir_too_small"]
MOUNT_CASES += ["train_out_on_a_full_disk"]
CASE_NAMES = [*_cases(Places(*[Path("-")] * 4, None, None, None)), *MOUNT_CASES]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_output_that_cannot_be_written_is_one_line(
    name: str, places: Places, runs: dict[str, Cli]
) -> None:
    if name not in runs:
        pytest.skip("needs root to mount a read-only or a small file system")
    case = _cases(places)[name]
    command = next(a for a in case.args if not a.startswith("-"))
    assert_one_error_line(runs[name], command, case.file, case.problem)
    leftovers = [p for p in places.a_file.parent.rglob("*.tmp")]
    assert leftovers == []


def test_inputs_are_unchanged_and_nothing_half_written(
    places: Places, runs: dict[str, Cli]
) -> None:
    assert places.a_file.read_text() == "not a folder\n"
    assert list(places.a_folder.iterdir()) == []
    assert places.ckpt.stat().st_size > 1_000_000  # still the checkpoint, not a CSV
    if places.small is not None:
        run = places.small / "run"
        assert not (run / "checkpoint.pt").exists()
        assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    if places.full is not None:
        assert list((places.full / "cache").iterdir()) == []
