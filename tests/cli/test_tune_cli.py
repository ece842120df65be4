"""`metastasis tune`: options and one-line errors (the search itself: tests/tune/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from metastasis.cli import main

pytest.importorskip("optuna", reason="the hpo extra (optuna) is not installed")


@pytest.fixture
def space(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text("lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n")
    return path


def error_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_random_search_needs_a_trial_count(
    space: Path, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["tune", "--space", str(space), "--sampler", "random", "--data", str(demo_data)]
    assert error_of([*argv, "--out", str(tmp_path / "s")], capsys) == (
        "metastasis tune: error: --trials N is needed for the random sampler"
    )


def test_grid_needs_discrete_values(
    space: Path, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["tune", "--space", str(space), "--sampler", "grid", "--data", str(demo_data)]
    assert "lr: the grid sampler needs discrete values" in error_of(
        [*argv, "--out", str(tmp_path / "s")], capsys
    )


def test_bad_space_and_missing_study(
    tmp_path: Path, space: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: [0.1, 0.2]\n")
    assert "unknown setting 'learning_rate'" in error_of(["tune", "--space", str(bad)], capsys)
    argv = ["tune", "--space", str(space), "--report-only", "--out", str(tmp_path / "none")]
    expected = "metastasis tune: error: no study named 'space' in this storage"
    assert error_of(argv, capsys) == expected


def test_unreachable_database_is_one_line(
    space: Path, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("psycopg2")
    url = "postgresql+psycopg2://nobody:secret@127.0.0.1:9/none?connect_timeout=2"
    argv = ["tune", "--space", str(space), "--trials", "1", "--storage", url, "--report-only"]
    line = error_of([*argv, "--out", str(tmp_path / "s")], capsys)
    assert line.startswith("metastasis tune: error: cannot open storage postgresql+psycopg2://")
    assert "secret" not in line and "***" in line


def test_a_flag_the_space_also_sets_is_refused(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every trial would use the space's value: the flag would be ignored without a word."""
    space = tmp_path / "space.yaml"
    space.write_text("lr: [1.0e-3, 1.0e-2]\nepochs: 2\n")
    argv = ["tune", "--space", str(space), "--sampler", "grid", "--data", str(demo_data)]
    assert error_of([*argv, "--epochs", "1", "--out", str(tmp_path / "s")], capsys) == (
        f"metastasis tune: error: {space}: the search space sets epochs, which every trial "
        "would use instead of --epochs 1; remove the flag or the entry from the space"
    )
    assert not (tmp_path / "s").exists()
