from pathlib import Path

import pytest

from metastasis.config import TrainConfig, build_config, dump_config, read_yaml, resolve_config
from metastasis.errors import MetastasisError

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


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
