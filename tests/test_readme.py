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


MAKEFILE = README.with_name("Makefile")


def demo_next_steps() -> list[list[str]]:
    """The ``metastasis ...`` commands ``make demo`` prints as next steps, as argument lists
    (the venv's path and the make variables replaced by plain words)."""
    target = MAKEFILE.read_text().split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    steps = target.split("Next steps", 1)[1]
    found = []
    for line in re.findall(r'echo "([^"]*)"', steps):
        line = line.replace("$$run", "RUN").replace("$(DEMO_DATA)", "DATA")
        found += [c.split() for c in re.findall(r"\$\(BIN\)/metastasis ([^(']+)", line)]
    return found


def test_make_demo_shows_next_steps_that_are_real_commands() -> None:
    """``make demo`` ends with the next commands to type: each is a command the CLI has, with
    options it takes (parsed by the real parser, nothing run)."""
    from metastasis.cli import build_parser

    steps = demo_next_steps()
    assert {s[0] for s in steps} >= {"serve", "eda", "train"}
    for words in steps:
        build_parser().parse_args(words)
