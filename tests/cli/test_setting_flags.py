"""Flags derived from the settings' declarations: what `train` and `tune` accept, what they make
of it, what `--help` says (no training here: the flags up to the resolved config)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from metastasis.cli import build_parser, main
from metastasis.cli.common import setting_values, training_config
from metastasis.config import TrainConfig


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _train_config(argv: list[str], config: Path | None = None) -> TrainConfig:
    args = build_parser().parse_args(["train", *argv])
    return training_config(
        str(config) if config else None, setting_values(args, list(TrainConfig.model_fields))
    )


def test_flags_override_the_recipe_and_dict_flags_set_single_keys(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 7\ncalibrate: true\nmodel_kwargs: {dropout: 0.2, dense: 64}\n")
    cfg = _train_config(
        [
            *("--epochs", "3", "--no-calibrate", "--no-shuffle"),
            *("--model-kwargs", "dropout=0.5", "--model-kwargs", "fourth_block=true"),
            *("--logger", "csv,mlflow", "--logger", "tensorboard", "--logger", "csv"),
            *("--exclude", "flagged.csv", "--tracking-uri", "file:./mlruns"),
        ],
        recipe,
    )
    assert (cfg.epochs, cfg.calibrate, cfg.shuffle) == (3, False, False)
    assert cfg.model_kwargs == {"dropout": 0.5, "dense": 64, "fourth_block": True}
    assert cfg.loggers == ["csv", "mlflow", "tensorboard"]
    assert (cfg.exclude, cfg.tracking_uri, cfg.experiment) == (
        "flagged.csv",
        "file:./mlruns",
        "metastasis",
    )
    untouched = _train_config([], recipe)  # no flag: the recipe's values, then the defaults
    assert (untouched.epochs, untouched.calibrate, untouched.shuffle) == (7, True, True)
    assert untouched.model_kwargs == {"dropout": 0.2, "dense": 64}


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["--optimizer", "adagrad"],
            "options: unknown optimizer 'adagrad'; known: adam, adamw, sgd",
        ),
        (["--label-smoothing", "1"], "options: label_smoothing must be in [0, 1), got 1.0"),
        (["--threshold-method", "median"], "options: unknown threshold method 'median'"),
    ],
)
def test_a_bad_flag_value_is_one_line_naming_the_setting(
    argv: list[str], line: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--data", str(tmp_path), *argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"metastasis train: error: {line}")
    assert not (tmp_path / "r").exists()


def test_a_bad_recipe_value_names_the_recipe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("schedule: linear\n")
    assert main(["train", "--config", str(recipe), "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"metastasis train: error: {recipe}: unknown schedule 'linear'; "
        "known: constant, cosine, onecycle"
    )


def test_a_bad_list_item_or_pair_is_refused_by_the_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["--logger", "csv,wandb"], ["--model-kwargs", "dropout"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", *argv])
    err = capsys.readouterr().err
    assert "choose from csv, tensorboard, mlflow" in err and "expected KEY=VALUE" in err


def test_resume_takes_no_other_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--resume", str(tmp_path), "--epochs", "2", "--no-shuffle"]) == 2
    assert capsys.readouterr().err.strip() == (
        "metastasis train: error: --resume continues a run with its own config.yaml; "
        "drop --epochs, --shuffle"
    )


def test_every_option_of_every_command_says_its_default() -> None:
    """Required options and switches aside, `--help` states each option's default."""
    missing = []
    for name, sub in _subparsers().items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if not action.option_strings or action.required or action.nargs == 0:
                continue
            if isinstance(action, argparse._HelpAction):
                continue
            if "default" not in formatter._get_help_string(action):
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, missing


def test_tune_flags_derive_from_the_study_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from metastasis.tune.options import TuneOptions

    tune = {s: a for a in _subparsers()["tune"]._actions for s in a.option_strings}
    for name in TuneOptions.model_fields:
        assert tune["--" + name.replace("_", "-")].dest == name
    space = tmp_path / "space.yaml"
    space.write_text("lr: [0.1, 0.01]\n")
    assert main(["tune", "--space", str(space), "--sampler", "bayes", "--data", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "metastasis tune: error: options: unknown sampler 'bayes'; known: grid, random, tpe"
    )
    assert main(["tune", "--space", str(space), "--trials", "0", "--data", str(tmp_path)]) == 2
    assert "options: trials must be >= 1, got 0" in capsys.readouterr().err


def test_inference_and_slide_flags_come_from_their_declarations() -> None:
    """predict, evaluate, explain, serve and slides take their engine (and the rest of
    ``InferenceOptions``) from one declaration, slides every ``SlideOptions`` setting: the
    flag, its choices and its ``--help`` default are the declaration's."""
    from metastasis.inference.options import ENGINES, InferenceOptions
    from metastasis.settings import default_text, flag_name
    from metastasis.slides.options import SlideOptions

    parsers = _subparsers()
    for command in ("predict", "evaluate", "explain", "serve", "slides"):
        engine = next(a for a in parsers[command]._actions if a.dest == "engine")
        assert engine.metavar == "{" + ",".join(ENGINES) + "}" and engine.default is None
    declared = {**InferenceOptions.model_fields, **SlideOptions.model_fields}
    flags = {a.dest: a for a in parsers["slides"]._actions}
    for name, info in declared.items():
        action = flags[name]
        assert flag_name(name).split("/")[0] in action.option_strings
        assert f"(default: {default_text(info)})" in (action.help or "").replace("%%", "%")
    args = build_parser().parse_args(["slides", "s.tif", "--checkpoint", "c", "--out", "o",
                                      "--min-tissue", "0.5", "--no-resume"])  # fmt: skip
    from metastasis.slides.options import NAMES, slide_options

    options = slide_options(setting_values(args, NAMES))
    assert options.min_tissue == 0.5 and options.resume is False and options.itc_mm == 0.2


def test_a_bad_slide_or_inference_flag_is_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for flag in (["--min-tissue", "2"], ["--engine", "magic"], ["--shard", "3/2"],
                 ["--itc-mm", "5"], ["--batch-size", "0"], ["--mpp", "0.001"]):  # fmt: skip
        code = main(["slides", str(tmp_path), "--checkpoint", str(tmp_path / "c.pt"), "--out",
                     str(tmp_path / "out"), *flag])  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("metastasis slides: error:")
        assert not (tmp_path / "out").exists()


def test_the_threshold_override_decides_in_every_command(
    trained_run: Any, demo_data: Path, tmp_path: Path
) -> None:
    """``--threshold`` (declared once, in ``InferenceOptions``) replaces the checkpoint's in
    predict, evaluate, and the service; the slides' classifier takes it the same way."""
    import json

    import pandas as pd

    from metastasis.checkpoint import load_checkpoint
    from metastasis.serve.model import ServedModel
    from metastasis.slides.classify import SlideClassifier

    run = Path(trained_run.run_dir)
    for threshold, label in (("0", 1), ("1", 0)):
        out = tmp_path / f"p{threshold}.csv"
        common = ["--checkpoint", str(run), "--data", str(demo_data / "valid"), "--no-progress"]
        assert main(["predict", *common, "--out", str(out), "--threshold", threshold]) == 0
        assert set(pd.read_csv(out)["prediction"]) == {label}
    ev = tmp_path / "ev"
    assert main(["evaluate", *common, "--out", str(ev), "--threshold", "0", "--gallery", "0"]) == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["sensitivity"] == 1.0 and metrics["specificity"] == 0.0
    served = ServedModel(run, engine="torch", threshold=0.25).describe()
    assert served["threshold"] == 0.25
    assert served["checkpoint_threshold"] == load_checkpoint(run).threshold
    assert SlideClassifier.from_checkpoint(run, engine="torch", threshold=0.3).threshold == 0.3
