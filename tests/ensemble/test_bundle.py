"""ensemble.bundle: members checked together, one ``ensemble`` bundle, refusals in one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from metastasis.checkpoint import Bundle, load_checkpoint, save_checkpoint, state_dict_cpu
from metastasis.ensemble.bundle import ensemble_bundle, load_members
from metastasis.errors import CheckpointError
from metastasis.models import create_model
from metastasis.transforms.presets import Preprocessing
from metastasis.transforms.stain import StainReference

FIRST = "<first>"  # the first member's run, in the expected words
REINHARD = StainReference("reinhard", mean=(-0.45, -0.07, 0.02), std=(0.31, 0.05, 0.014))


def member(arch: str, seed: int, **fields: object) -> Bundle:
    """A real model with random weights, as a checkpoint bundle."""
    torch.manual_seed(seed)
    model = create_model(arch)
    return Bundle(arch, {}, state_dict_cpu(model), Preprocessing(), **fields)  # type: ignore[arg-type]


def saved(tmp_path: Path, name: str, bundle: Bundle) -> Path:
    run = tmp_path / name
    run.mkdir()
    save_checkpoint(run / "checkpoint.pt", bundle)
    return run


def test_the_bundle_holds_every_member_and_round_trips(tmp_path: Path) -> None:
    a = member("regularised-cnn", 0, threshold=0.4, temperature=1.5, tta="d4")
    b = member("baseline-cnn", 1, threshold=0.6, tta="d4")
    bundle = ensemble_bundle([("a", a), ("b", b)])
    assert bundle.arch == "ensemble" and bundle.temperature == 1.0 and bundle.tta == "d4"
    assert bundle.threshold == pytest.approx(0.5)  # the mean of the members'
    assert [m["temperature"] for m in bundle.arch_kwargs["members"]] == [1.5, 1.0]
    path = save_checkpoint(tmp_path / "checkpoint.pt", bundle)
    loaded = load_checkpoint(path)
    assert set(loaded.state_dict) == {f"members.0.{k}" for k in a.state_dict} | {
        f"members.1.{k}" for k in b.state_dict
    }
    x = torch.rand(3, 3, 96, 96)
    with torch.no_grad():
        mean = (torch.sigmoid(a.build_model()(x) / 1.5) + torch.sigmoid(b.build_model()(x))) / 2
        torch.testing.assert_close(torch.sigmoid(loaded.build_model()(x)), mean, atol=1e-6, rtol=0)
    mixed = ensemble_bundle([("a", a), ("b", dataclasses.replace(b, tta="none"))])
    assert mixed.tta == "none"  # the members disagree


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            {"preprocessing": Preprocessing(input_size=64)},
            f"preprocessing.input_size is 64, {FIRST}'s is 96",
        ),
        ({"preprocessing": Preprocessing(mean=(0.5, 0.5, 0.5))}, "preprocessing.mean is"),
        (
            {"preprocessing": Preprocessing(stain=REINHARD)},
            f"preprocessing.stain is reinhard, {FIRST}'s is none",
        ),
        ({"synthetic": True}, "trained on the synthetic drawings, unlike"),
    ],
)
def test_a_member_that_differs_is_refused_in_one_line_naming_its_run(
    tmp_path: Path, change: dict[str, object], words: str
) -> None:
    first = saved(tmp_path, "first", member("regularised-cnn", 0))
    words = words.replace(FIRST, str(first))
    other = saved(tmp_path, "other", dataclasses.replace(member("regularised-cnn", 1), **change))
    with pytest.raises(CheckpointError) as err:
        load_members([first, other])
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{other}: ") and words in message
    assert f"{first}" in message


def test_one_run_or_the_same_run_twice_is_refused(tmp_path: Path) -> None:
    run = saved(tmp_path, "run", member("regularised-cnn", 0))
    with pytest.raises(CheckpointError, match="at least two runs, got 1"):
        load_members([run])
    with pytest.raises(CheckpointError, match="given twice"):
        load_members([run, run / "checkpoint.pt"])
