"""The documentation site builds with --strict, and its generated pages say what the code says."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

from metastasis.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _commands_hook():  # docs/hooks/commands.py is an mkdocs hook, not a package module
    spec = importlib.util.spec_from_file_location("commands_hook", ROOT / "docs/hooks/commands.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_and_option_is_on_the_commands_page() -> None:
    hook = _commands_hook()
    page = hook.commands_markdown(build_parser())
    subs = _subcommands(build_parser())
    assert {"check", "train", "evaluate", "predict", "eda", "tune", "synth"} <= set(subs)
    for name, sub in subs.items():
        section = page.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for flag in action.option_strings:
                assert re.search(rf"`{re.escape(flag)}[` ]", section), f"{name} {flag} missing"
            if action.help and action.help != argparse.SUPPRESS:
                # a default the help states is in the default column; the rest in the description
                stated = hook._STATED_DEFAULT.search(action.help)
                text = hook._STATED_DEFAULT.sub("", action.help)
                for part in (text, stated.group(1) if stated else ""):
                    words = re.sub(r"\s+", " ", part)[:20].replace("|", "\\|")
                    assert words.replace("<", "&lt;").replace(">", "&gt;") in section


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    notebooks = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in ROOT.glob("notebooks/*")}
    env = {**os.environ, "METASTASIS_DOCS_EXECUTE": "false", "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # building never writes outputs into the stored notebooks
    assert notebooks == {
        p: hashlib.sha256(p.read_bytes()).hexdigest() for p in ROOT.glob("notebooks/*")
    }
    return out


def _text(path: Path) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", path.read_text())))


def test_the_site_has_every_page(site: Path) -> None:
    for page in (
        "index.html",
        "getting-started/index.html",
        "data/index.html",
        "commands/index.html",
        "python/index.html",
        "recipes/index.html",
        "models/index.html",
        "threshold/index.html",
        "bad-input/index.html",
        "scaling/index.html",
        "using-models/index.html",
        "reference/index.html",
        "notebooks/01_data_and_eda/index.html",
        "notebooks/04_use_a_model/index.html",
    ):
        assert (site / page).is_file(), page
    assert (site / "assets/eda-samples.png").is_file()


def test_generated_and_included_pages(site: Path) -> None:
    commands = _text(site / "commands/index.html")
    assert "--kaggle-submission" in commands and "--threshold-method" in commands
    assert "--epochs N 10 training epochs" in commands  # a training flag: the setting's default
    # the README sections the pages include are there, measured numbers and all
    recipes = _text(site / "recipes/index.html")
    assert "0.9516" in recipes and "configs/fast-cpu.yaml" in recipes
    assert "--label-smoothing" in recipes  # the options table generated from TrainConfig
    assert "torchrun" in _text(site / "scaling/index.html")
    python = _text(site / "python/index.html")
    assert "Predictor.from_checkpoint(run.checkpoint)" in python
    assert "id, probability, prediction, truth" in python  # README's "Output files"
    # the API reference is rendered from the docstrings
    reference = _text(site / "reference/index.html")
    assert "A table of" in reference and "predict_proba" in reference
    assert "Train ``cfg.model``" not in reference  # rendered, not raw reST


def test_notebooks_are_rendered_from_the_stored_files(site: Path) -> None:
    page = _text(site / "notebooks/02_train_and_evaluate/index.html")
    assert "YOUR DATA" in page and "metastasis.fit" in page
