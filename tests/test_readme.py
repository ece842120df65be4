"""The README's Python example runs as it stands (in a temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    text = README.read_text()
    section = text.split("[start:python-example]", 1)[1].split("[end:python-example]", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block between the python-example markers"
    return match.group(1)


def test_the_example_is_about_ten_lines() -> None:
    lines = [line for line in python_example().splitlines() if line.strip()]
    assert len(lines) <= 12


def test_the_readme_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(python_example(), str(README), "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "probability" in out and "prediction" in out and "truth" in out
    accuracy = float(out.rsplit("accuracy", 1)[1])
    assert 0.5 < accuracy <= 1.0  # two epochs learn the synthetic task, at Youden's threshold
    assert (tmp_path / "runs/example/checkpoint.pt").is_file()
