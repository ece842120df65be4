"""Recipes travel with the package: `--config NAME` and `--space NAME` from any folder, the
`recipes` listing with its measured numbers, and the one-line errors around them."""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path

import pytest

from metastasis.cli import main
from metastasis.config import RECIPES, SEARCH_SPACES, measured, resolve_config, shipped_recipes

ROOT = Path(__file__).parents[2]


def test_the_clone_s_configs_folder_is_the_shipped_recipes() -> None:
    # one copy: configs/ is a link to the package data, never a second set that can drift
    assert (ROOT / "configs").resolve() == RECIPES
    assert set(shipped_recipes()) >= {"baseline_cnn", "best-cpu", "demo", "fast-cpu", "resnet18"}
    assert set(shipped_recipes(SEARCH_SPACES)) >= {"baseline_cnn", "baseline_cnn_grid"}


def test_every_recipe_file_is_package_data() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["metastasis"]
    package = RECIPES.parent
    files = [p.relative_to(package).as_posix() for p in RECIPES.rglob("*") if p.is_file()]
    assert files
    for name in files:
        assert any(fnmatch(name, pattern) for pattern in patterns), f"{name}: not in the wheel"


def test_recipes_lists_each_with_model_epochs_and_measured_numbers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, path in shipped_recipes().items():
        cfg = resolve_config(path)
        (line,) = [line for line in lines if line.split()[0] == name]
        assert f" {cfg.model} " in line and f" {cfg.epochs} epochs" in line
        assert line.endswith(measured(path) or "not measured")
    assert "val ROC-AUC 0.9106" in next(line for line in lines if line.startswith("fast-cpu"))
    assert any("baseline_cnn_grid" in line for line in lines)


def test_measured_numbers_are_the_readme_s() -> None:
    rows = [
        line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `")
    ]
    found = 0
    for name, path in shipped_recipes().items():
        numbers = measured(path)
        if numbers is None:
            continue
        # a recipe may have several rows (e.g. the same recipe trained on another CPU): the
        # numbers `metastasis recipes` prints must all be in one of them
        own = [row for row in rows if row.startswith(f"| `{name}` ")]
        assert own, f"{name}: no row in the README's recipe table"
        wanted = re.findall(r"\d+[.:]\d+", numbers)
        assert wanted
        assert any(all(number in row for number in wanted) for row in own), (
            f"{name}: no README row holds all of {wanted}"
        )
        found += 1
    assert found >= 3


def test_config_by_name_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_config("fast-cpu") == resolve_config(RECIPES / "fast-cpu.yaml")
    assert resolve_config("baseline-cnn") == resolve_config(RECIPES / "baseline_cnn.yaml")
    # the recipe's warm-up (1 epoch) is read by name; --epochs 1 is below it: the fix is named
    assert main(["train", "--config", "fast-cpu", "--epochs", "1", "--data", "d"]) == 2
    assert capsys.readouterr().err.strip() == (
        "metastasis train: error: options: warmup_epochs must be in [0, epochs), got 1.0 for 1 "
        "epochs; set --warmup-epochs below 1 (0: no warm-up, or one-cycle's default rise over "
        "30% of the run)"
    )


def test_a_file_of_that_name_wins_and_a_path_is_never_looked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fast-cpu").write_text("epochs: 2\n")
    assert resolve_config("fast-cpu").epochs == 2
    assert main(["train", "--config", "sub/fast-cpu", "--data", "d"]) == 2
    assert "sub/fast-cpu: cannot read config" in capsys.readouterr().err


def test_an_unknown_name_lists_the_known_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", "fast-gpu", "--data", "d"]) == 2
    known = ", ".join(shipped_recipes())
    assert capsys.readouterr().err.strip() == (
        "metastasis train: error: fast-gpu: no such file, nor a shipped recipe of that name; "
        f"known: {known}"
    )
    assert main(["tune", "--space", "cnn", "--data", "d"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("metastasis tune: error: cnn: no such file, nor a shipped search space")
    assert err.endswith("baseline_cnn, baseline_cnn_grid")
