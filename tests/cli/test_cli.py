import json
import subprocess
import sys
from pathlib import Path

import pytest

from metastasis.cli import build_parser, command_modules, main


@pytest.mark.parametrize("command", sorted(command_modules()))
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    assert "usage: metastasis " + command in capsys.readouterr().out


def test_console_script_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "metastasis", "--help"], capture_output=True, text=True, check=True
    )
    assert "check" in out.stdout and "train" in out.stdout


def test_data_problem_is_one_line_without_traceback(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "metastasis", "check", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert (
        out.stderr.strip()
        == f"metastasis check: error: {tmp_path / 'nope'}: no such file or folder"
    )


def test_train_evaluate_predict_through_the_cli(
    demo_data: Path, kaggle_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text("epochs: 1\nbatch_size: 64\nlr: 0.002\n")
    run = tmp_path / "run"
    assert (
        main(
            [
                "-q",
                "train",
                "--config",
                str(cfg),
                "--data",
                str(demo_data / "train"),
                "--val-data",
                str(demo_data / "valid"),
                "--seed",
                "3",
                "--out",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"run folder: {run}" in out and "validation ROC-AUC" in out
    assert "note:       the model was trained on synthetic drawings" in out
    resolved = (run / "config.yaml").read_text()
    assert "lr: 0.002" in resolved and "seed: 3" in resolved and "batch_size: 64" in resolved
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(run),
                "--data",
                str(demo_data / "valid"),
                "--out",
                str(tmp_path / "ev"),
                "--no-progress",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    assert printed["n"] == 64 and 0 <= printed["roc_auc"] <= 1
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(run / "checkpoint.pt"),
                "--data",
                str(kaggle_data),
                "--kaggle-submission",
                "--out",
                str(tmp_path / "sub.csv"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (tmp_path / "sub.csv").read_text().startswith("id,label\n")


def test_models_lists_the_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    assert "baseline-cnn" in capsys.readouterr().out


def test_bad_option_value_is_one_line(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "train",
            "--data",
            str(demo_data / "train"),
            "--augment",
            "wild",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2
    assert "unknown augmentation preset 'wild'" in capsys.readouterr().err


def test_synth_writes_each_layout(tmp_path: Path) -> None:
    for layout in ("folder", "kaggle", "pcam-h5"):
        assert (
            main(
                [
                    "synth",
                    "--out",
                    str(tmp_path / layout),
                    "--layout",
                    layout,
                    "--n",
                    "8",
                    "--n-valid",
                    "4",
                ]
            )
            == 0
        )
    assert main(["check", str(tmp_path / "kaggle"), "--strict", "--no-progress"]) == 0
    assert main(["check", str(tmp_path / "pcam-h5"), "--strict", "--no-progress"]) == 0
    assert main(["check", str(tmp_path / "folder"), "--strict", "--no-progress"]) == 0


def test_a_checkpoint_that_lies_is_one_line(
    trained_run: object, kaggle_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A NaN threshold would make every label 0: refused when loading, naming the field."""
    import torch

    raw = torch.load(trained_run.run_dir / "checkpoint.pt", weights_only=True)  # type: ignore[attr-defined]
    torch.save({**raw, "threshold": float("nan")}, tmp_path / "nan.pt")
    out = tmp_path / "p.csv"
    args = ["--checkpoint", str(tmp_path / "nan.pt"), "--data", str(kaggle_data), "--out", str(out)]
    rc = main(["predict", *args, "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists()
    assert (
        err == f"metastasis predict: error: {tmp_path / 'nan.pt'}: threshold: nan is outside [0, 1]"
    )
