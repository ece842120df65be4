import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from metastasis import config
from metastasis.config import (
    TrainConfig,
    build_config,
    dump_config,
    field_names,
    options_table,
    read_yaml,
    resolve_config,
    shipped_recipes,
)
from metastasis.errors import MetastasisError
from metastasis.settings import choices, default_text, flag_name, value_type

CONFIGS = list(shipped_recipes().values())  # the package's recipes (configs/ in a clone)


def test_defaults_are_the_seed_recipe() -> None:
    cfg = TrainConfig()
    assert (cfg.model, cfg.batch_size, cfg.lr, cfg.optimizer, cfg.augment, cfg.val_fraction) == (
        "baseline-cnn",
        32,
        1e-3,
        "adam",
        "flips",
        0.2,
    )


def test_yaml_then_cli_overrides(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("epochs: 7\nlr: 0.01\nmodel_kwargs: {dropout: 0.5}\n")
    cfg = resolve_config(path, lr=0.5, epochs=None, batch_size=8)
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.model_kwargs) == (7, 0.5, 8, {"dropout": 0.5})


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    cfg = TrainConfig(data="d", epochs=3, model_kwargs={"dense": 64})
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert resolve_config(path) == cfg


def test_bad_settings_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(MetastasisError, match="unknown setting"):
        build_config({"epoch": 3})
    with pytest.raises(MetastasisError, match="'epochs' expects int, got 'many'"):
        build_config({"epochs": "many"})
    with pytest.raises(MetastasisError, match=r"'epochs' expects int, got 2\.5"):
        build_config({"epochs": 2.5})
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1\n")
    with pytest.raises(MetastasisError, match="invalid YAML"):
        read_yaml(bad)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_parses(path: Path) -> None:
    cfg = resolve_config(path)
    assert cfg.epochs >= 1
    from metastasis.models import list_models

    assert cfg.model in list_models()


# --- every option declared once --------------------------------------------------------------

README = Path(__file__).parents[1] / "README.md"


def _readme_block() -> str:
    text = README.read_text()
    start = text.index("<!-- options-table:start")
    return text[text.index("\n", start) + 1 : text.index("<!-- options-table:end -->")]


def test_the_readme_options_table_is_the_generated_one() -> None:
    assert _readme_block() == options_table(), (
        "README.md's options table differs from metastasis.config.options_table(): paste the "
        "function's output between the options-table markers"
    )


def test_every_setting_has_a_train_flag_and_a_readme_row_with_its_default() -> None:
    from metastasis.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = {s: a for a in sub.choices["train"]._actions for s in a.option_strings}
    rows = {line.split("|")[1].strip(" `"): line for line in _readme_block().splitlines()[2:]}
    assert set(rows) == set(field_names())
    for name, info in TrainConfig.model_fields.items():
        default = default_text(info)
        flags = flag_name(name, value_type(info)).split("/")
        for flag in flags:
            assert flag in train, f"{name}: no {flag} flag"
            assert train[flag].dest == name
        assert (train[flags[0]].help or "").endswith(f"(default: {default})"), name
        cells = [c.strip() for c in rows[name].split("|")]
        assert cells[3] == default.replace("<", "&lt;").replace(">", "&gt;"), name
        assert info.description, f"{name} has no help text"


def test_settings_added_later_take_their_defaults_in_old_saved_configs(tmp_path: Path) -> None:
    old = TrainConfig(data="d", epochs=3).to_dict()
    for name in ("exclude", "loggers", "tracking_uri", "experiment"):
        del old[name]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    cfg = resolve_config(path)
    assert (cfg.loggers, cfg.exclude, cfg.tracking_uri, cfg.experiment, cfg.epochs) == (
        ["csv"],
        None,
        None,
        "metastasis",
        3,
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"optimizer": "adagrad"}, "r.yaml: unknown optimizer 'adagrad'; known: adam, adamw, sgd"),
        ({"augment": "wild"}, "r.yaml: unknown augmentation preset 'wild'; known: none, flips, "),
        ({"loggers": ["csv", "wandb"]}, "r.yaml: unknown logger 'wandb'; known: csv, tensorboard"),
        ({"label_smoothing": 1.0}, "r.yaml: label_smoothing must be in [0, 1), got 1.0"),
        ({"epochs": 0}, "r.yaml: epochs must be >= 1, got 0"),
        ({"lr": "fast"}, "r.yaml: setting 'lr' expects float, got 'fast'"),
        ({"lr": float("inf")}, "r.yaml: setting 'lr' expects a finite number, got inf"),
        ({"epochs": True}, "r.yaml: setting 'epochs' expects int, got True"),
        ({"calibrate": "maybe"}, "r.yaml: setting 'calibrate' expects bool, got 'maybe'"),
        ({"threshold_method": "median"}, "r.yaml: unknown threshold method 'median'"),
        ({"warmup_epochs": 4, "epochs": 4}, "r.yaml: warmup_epochs must be in [0, epochs)"),
        ({"augment_kwargs": {"hue": 0.9}}, "r.yaml: augmentation setting hue must be <= 0.5"),
    ],
)
def test_each_problem_is_one_line_naming_the_setting_and_the_source(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(MetastasisError) as info:
        build_config(values, source="r.yaml")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_yaml_spellings_are_read_as_before() -> None:
    cfg = build_config(
        {"lr": "1e-3", "calibrate": "yes", "split": 2019, "epochs": 3.0, "loggers": "csv,mlflow"}
    )
    assert (cfg.lr, cfg.calibrate, cfg.split, cfg.epochs, cfg.loggers) == (
        1e-3,
        True,
        "2019",
        3,
        ["csv", "mlflow"],
    )


def test_replace_is_validated_and_the_config_frozen() -> None:
    cfg = TrainConfig(epochs=4)
    assert cfg.replace(epochs=5).epochs == 5 and cfg.epochs == 4
    with pytest.raises(MetastasisError, match="options: epochs must be >= 1, got 0"):
        cfg.replace(epochs=0)
    with pytest.raises(MetastasisError, match="TrainConfig: unknown setting"):
        TrainConfig(epoch=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        cfg.epochs = 5  # type: ignore[misc]


def test_allowed_values_are_read_from_the_one_declaration() -> None:
    from metastasis.engine import learner, schedule
    from metastasis.inference import batches
    from metastasis.transforms import augment

    assert learner.OPTIMIZERS is config.OPTIMIZERS
    assert batches.TTA_MODES is config.TTA_MODES
    assert schedule.SCHEDULES is config.SCHEDULES
    assert choices(TrainConfig.model_fields["augment"]) == augment.AUGMENT_PRESETS
