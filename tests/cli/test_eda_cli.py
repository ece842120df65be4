"""Tests for `metastasis eda`: the thin command over write_eda_report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metastasis.cli import main


def test_eda_command(demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eda"
    code = main(
        [
            "-q",
            "eda",
            str(demo_data),
            "--split",
            "valid",
            "--out",
            str(out),
            "--no-progress",
            "--seed",
            "3",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    result = json.loads((out / "eda.json").read_text())
    counts = {c: len(list((demo_data / "valid" / c).iterdir())) for c in ("0", "1")}
    assert result["class_balance"]["splits"] == {
        "valid": {
            "n": 64,
            "counts": counts,
            "percent": {c: 100 * v / 64 for c, v in counts.items()},
        }
    }
    assert result["analysed_split"] == "valid" and result["seed"] == 3
    assert f"valid: 64 patches (label 0: {counts['0']}, label 1: {counts['1']})" in text
    assert f"report: {out}/report.html" in text
    flagged = result["flagged"]["count"]
    assert f"flagged: {flagged:,} patches in {out}/flagged.csv" in text
    assert len((out / "flagged.csv").read_text().splitlines()) == 1 + flagged
    assert (out / "report.html").is_file() and (out / "pca_map.png").is_file()


def test_eda_bad_path_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eda", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"metastasis eda: error: {tmp_path / 'nope'}: no such file or folder"
    assert not (tmp_path / "x").exists()


def test_eda_needs_out(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["eda", "somewhere"])
    assert exc.value.code == 2
    assert "--out" in capsys.readouterr().err
