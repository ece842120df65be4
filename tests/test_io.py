"""Output locations: atomic files with the user's umask, one-line errors for every place an
output cannot go, outputs that would replace inputs refused, and real full and read-only disks."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from tests.mounts import fill, tmpfs

from metastasis.checkpoint import Bundle, save_checkpoint, state_dict_cpu
from metastasis.errors import OutputError
from metastasis.io import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    check_outputs,
    ensure_free_space,
    output_dir,
    preallocate,
)
from metastasis.models import create_model
from metastasis.transforms.presets import Preprocessing


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(
    tmp_path: Path, umask: None, mask: int, expected: int
) -> None:
    """As open() would: mkstemp's 0600 is never what a colleague or a web server sees."""
    os.umask(mask)
    assert _mode(atomic_write_text(tmp_path / "report.html", "<p>")) == expected
    with atomic_path(tmp_path / "table.csv") as tmp:
        tmp.write_text("id\n")
    assert _mode(tmp_path / "table.csv") == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "table.csv"]


def test_a_failed_block_leaves_nothing(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "keep.txt", "old")
    with pytest.raises(ValueError), atomic_path(tmp_path / "keep.txt") as tmp:
        tmp.write_text("half")
        raise ValueError("stop")
    assert (tmp_path / "keep.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_outputs_in_the_wrong_kind_of_place_are_one_line(tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (lambda: atomic_write_text(tmp_path, "x"), f"{tmp_path}: is a folder"),
        (lambda: atomic_write_text(a_file / "x.csv", "x"), f"{a_file}: output folder is a file"),
        (lambda: output_dir(a_file, "run folder"), f"{a_file}: run folder is a file"),
        (lambda: check_outputs(files=[tmp_path]), f"{tmp_path}: is a folder"),
        (lambda: check_outputs(folders=[a_file]), f"{a_file}: is a file"),
        (
            lambda: check_outputs(files=[a_file / "sub" / "x.csv"]),
            f"{a_file / 'sub'}: cannot create it: {a_file} is not a folder",
        ),
    ]
    for call, message in cases:
        with pytest.raises(OutputError) as err:
            call()
        assert str(err.value).startswith(message), str(err.value)
        assert "\n" not in str(err.value)


def test_check_outputs_creates_nothing(tmp_path: Path) -> None:
    check_outputs(files=[tmp_path / "new" / "deeper" / "p.csv"], folders=[tmp_path / "out"])
    assert list(tmp_path.iterdir()) == []


def test_an_input_is_never_an_output_under_any_name(tmp_path: Path) -> None:
    labels = tmp_path / "train_labels.csv"
    labels.write_text("id,label\n")
    (tmp_path / "hard").hardlink_to(labels)
    (tmp_path / "soft").symlink_to(labels)
    for name in ("train_labels.csv", "hard", "soft"):
        with pytest.raises(OutputError, match="is an input of this command"):
            check_outputs(files=[tmp_path / name], inputs=[labels])
    with pytest.raises(OutputError, match="is an input of this command"):
        check_outputs(files=[tmp_path / "x.png"], is_input=lambda p: p.name == "x.png")
    check_outputs(files=[tmp_path / "predictions.csv"], inputs=[labels])  # a new file is fine


def test_free_space_is_checked_before_writing(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"the cache needs 1048576\.00 GiB, only .* free"):
        ensure_free_space(tmp_path, 2**50, "the cache")


# --- real file systems ---------------------------------------------------------------------------


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "1m") as disk:
        with pytest.raises(OutputError, match=rf"^{disk / 'big.bin'}: cannot write: no space left"):
            atomic_write_bytes(disk / "big.bin", b"\0" * (2 << 20))
        assert list(disk.iterdir()) == []
        # the checkpoint writer (torch's zip writer) too: 6.8 MB of the seed's CNN on 1 MB
        model = create_model("baseline-cnn")
        bundle = Bundle("baseline-cnn", {}, state_dict_cpu(model), Preprocessing())
        with pytest.raises(OutputError, match=r"checkpoint\.pt: cannot write: no space left"):
            save_checkpoint(disk / "checkpoint.pt", bundle)
        assert list(disk.iterdir()) == []
        # reserving a memory map's blocks fails here, not as SIGBUS while writing through it
        (disk / "images.npy").write_bytes(b"")
        with pytest.raises(OutputError, match=r"cannot reserve 2\.0 MiB: no space left"):
            preallocate(disk / "images.npy", 2 << 20)


def test_read_only_disk_is_one_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as disk:
        message = rf"^{disk}: cannot write here: read-only file system"
        with pytest.raises(OutputError, match=message):
            check_outputs(files=[disk / "p.csv"])
        with pytest.raises(OutputError, match="read-only file system"):
            atomic_write_text(disk / "p.csv", "x")
        with pytest.raises(OutputError, match="cannot create output folder: read-only"):
            output_dir(disk / "run")


def test_a_full_disk_stops_torch_save_cleanly_when_already_full(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "256k") as disk:
        fill(disk)
        with (
            pytest.raises(OutputError, match="no space left"),
            atomic_path(disk / "t.pt") as tmp,
            open(tmp, "wb") as fh,
        ):
            torch.save({"w": torch.zeros(1000)}, fh)
        assert [p.name for p in disk.iterdir()] == ["filler"]
