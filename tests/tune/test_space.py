from pathlib import Path

import pytest

from metastasis.config import TrainConfig
from metastasis.errors import MetastasisError
from metastasis.tune.space import apply_params, load_space, parse_space

SEARCH_SPACES = sorted((Path(__file__).parents[2] / "configs" / "search").glob("*.yaml"))


def test_ranges_choices_fixed_values_and_dotted_names() -> None:
    space = parse_space(
        {
            "lr": {"low": "1e-4", "high": 1.0e-2, "log": True},  # YAML reads 1e-4 as a string
            "epochs": {"low": 1, "high": 3},
            "model_kwargs.dropout": {"low": 0.0, "high": 0.5, "step": 0.1},
            "batch_size": [32, 64],
            "augment": {"choices": ["none", "flips"]},
            "val_fraction": 0.25,
        }
    )
    kinds = {p.name: p.kind for p in space.params}
    assert kinds == {
        "lr": "float",
        "epochs": "int",
        "model_kwargs.dropout": "float",
        "batch_size": "categorical",
        "augment": "categorical",
    }
    assert space.params[0].low == pytest.approx(1e-4) and space.params[0].log
    assert space.fixed == {"val_fraction": 0.25}
    cfg = apply_params(
        TrainConfig(model_kwargs={"dense": 64}), {"model_kwargs.dropout": 0.3, "lr": 0.01}
    )
    assert cfg.model_kwargs == {"dense": 64, "dropout": 0.3} and cfg.lr == 0.01


def test_suggest_asks_the_trial() -> None:
    optuna = pytest.importorskip("optuna")
    space = parse_space(
        {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "epochs": {"low": 1, "high": 3}}
    )
    trial = optuna.trial.FixedTrial({"lr": 0.001, "epochs": 2})
    assert space.suggest(trial) == {"lr": 0.001, "epochs": 2}


def test_grid_values() -> None:
    space = parse_space(
        {
            "lr": {"low": 1e-4, "high": 1e-2, "log": True, "grid": ["1e-3", 0.003]},
            "epochs": {"low": 1, "high": 2},
            "augment": ["none", "flips"],
        }
    )
    assert space.grid() == {"lr": [1e-3, 0.003], "epochs": [1, 2], "augment": ["none", "flips"]}
    assert len(space.grid_points()) == 8
    with pytest.raises(MetastasisError, match="lr: the grid sampler needs discrete values"):
        parse_space({"lr": {"low": 1e-4, "high": 1e-2}}).grid()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"learning_rate": [0.1]}, "unknown setting 'learning_rate'"),
        ({"out": ["a", "b"]}, "unknown setting 'out'"),
        ({"lr.x": [0.1]}, "a dotted name must be a key of a dict setting"),
        ({"lr": {"low": 0.1}}, "a range needs both `low` and `high`"),
        ({"lr": {"low": 0.1, "high": 0.01}}, "`low` must be below `high`"),
        ({"lr": {"low": 0, "high": 1, "log": True}}, "a log range needs `low` > 0"),
        ({"lr": {"low": 0.1, "high": 1, "scale": "log"}}, "unknown key(s) scale"),
        ({"batch_size": [32, 32]}, "lists a value twice"),
        ({"batch_size": ["big", 64]}, "setting 'batch_size' expects int"),
        ({"epochs": 3}, "nothing to search"),
    ],
)
def test_mistakes_are_one_clear_line(raw: dict, message: str) -> None:
    with pytest.raises(MetastasisError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_space(raw, source="space.yaml")


@pytest.mark.parametrize("path", SEARCH_SPACES, ids=lambda p: p.name)
def test_shipped_search_spaces_parse(path: Path) -> None:
    space = load_space(path)
    assert space.params
    if "grid" in path.stem:
        assert space.grid_points()
