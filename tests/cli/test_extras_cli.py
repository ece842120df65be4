"""A command whose optional extra is missing ends with one line naming the extra and exit
status 2, never a ModuleNotFoundError traceback; `metastasis --version`.

A ``sys.modules[name] = None`` entry makes ``import name`` fail as it does for a package that is
not installed (uninstalling packages from the test environment is not an option)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from metastasis.cli import main
from metastasis.extras import MODULES, SERVE, SLIDES, TUNE


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize("module", SERVE)
def test_serve_without_the_serve_extra(
    module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    assert main(["serve", "--checkpoint", str(tmp_path / "c.pt")]) == 2
    label = MODULES[module][1]
    assert _one_line_error(capsys) == (
        f"metastasis serve: error: the REST service needs {label}: pip install 'metastasis[serve]'"
    )


@pytest.mark.parametrize("module", SLIDES)
def test_slides_without_the_wsi_extra(
    module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    args = ["slides", str(tmp_path), "--checkpoint", str(tmp_path / "c.pt"), "--out", "out"]
    assert main(args) == 2
    label = MODULES[module][1]
    assert _one_line_error(capsys) == (
        f"metastasis slides: error: whole-slide analysis needs {label}: "
        "pip install 'metastasis[wsi]'"
    )


def test_tune_without_the_hpo_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, TUNE[0], None)
    assert main(["tune", "--space", "baseline_cnn", "--data", str(tmp_path)]) == 2
    assert _one_line_error(capsys) == (
        "metastasis tune: error: hyper-parameter search needs Optuna: pip install 'metastasis[hpo]'"
    )


@pytest.mark.parametrize(
    ("logger", "label"), [("mlflow", "MLflow"), ("tensorboard", "TensorBoard")]
)
def test_train_logger_without_the_track_extra(
    logger: str,
    label: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, logger, None)
    out = tmp_path / "run"
    args = ["train", "--data", str(tmp_path), "--logger", f"csv,{logger}", "--out", str(out)]
    assert main(args) == 2
    assert _one_line_error(capsys) == (
        f"metastasis train: error: --logger {logger} needs {label}: pip install 'metastasis[track]'"
    )
    assert not out.exists()  # refused before anything was written


def test_an_extra_that_is_installed_but_does_not_import_says_why(tmp_path: Path) -> None:
    # FastAPI is there but its own dependency is not: a fresh process, so FastAPI really imports
    code = (
        "import sys; sys.modules['starlette'] = None\n"
        "from metastasis.cli import main\n"
        f"sys.exit(main(['serve', '--checkpoint', {str(tmp_path / 'c.pt')!r}]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "metastasis serve: error: the REST service needs FastAPI, which does not import "
        "(ModuleNotFoundError: import of starlette halted; None in sys.modules): "
        "pip install 'metastasis[serve]'"
    )


def test_every_extra_named_is_one_of_pyproject() -> None:

    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    assert {extra for extra, _ in MODULES.values()} <= set(extras)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"metastasis {metadata.version('metastasis')}\n"
