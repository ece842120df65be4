"""`train --exclude FILE`: a tiny real training that leaves listed patches out, and says so."""

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from metastasis.cli import main
from metastasis.data import synthetic


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.write_demo_dataset(
        tmp_path_factory.mktemp("small") / "demo", n_train=48, n_valid=16, seed=4
    )


def _train(data: Path, out: Path, exclude: Path, cache: Path) -> int:
    return main(
        [
            "train",
            "--data",
            str(data / "train"),
            "--val-data",
            str(data / "valid"),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--exclude",
            str(exclude),
            "--cache-dir",
            str(cache),
            "--out",
            str(out),
            "--no-progress",
        ]
    )


def test_train_leaves_out_the_listed_patches_and_records_how_many(
    small_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train_ids = sorted(p.stem for p in (small_data / "train").glob("*/*.png"))
    val_ids = sorted(p.stem for p in (small_data / "valid").glob("*/*.png"))
    flagged = tmp_path / "flagged.csv"  # as the EDA writes it
    rows = [(i, "blank") for i in train_ids[:4]] + [(val_ids[0], "blurry"), ("elsewhere", "blank")]
    pd.DataFrame(rows, columns=["id", "reason"]).to_csv(flagged, index=False)
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="metastasis.data.id_lists"):
        assert _train(small_data, run, flagged, tmp_path / "cache") == 0
    said = f"{flagged}: left out 4 training and 1 validation patches (5 of its 6 ids are in"
    assert said in caplog.text
    data = json.loads((run / "data.json").read_text())
    assert data["left_out"] == {
        "file": str(flagged),
        "n_ids": 6,
        "n_matched": 5,
        "train": 4,
        "val": 1,
    }
    assert (data["train"]["n_used"], data["val"]["n_used"]) == (44, 15)
    splits = pd.read_csv(run / "splits.csv", dtype={"id": str})
    assert len(splits) == 59 and not set(splits["id"]) & {r[0] for r in rows}
    preds = pd.read_csv(run / "val_predictions.csv", dtype={"id": str})
    assert sorted(preds["id"]) == val_ids[1:]


def test_train_refuses_a_list_that_names_none_of_the_patches(
    small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("train/0/x.png\n")
    run = tmp_path / "run"
    assert _train(small_data, run, ids, tmp_path / "cache") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"metastasis train: error: {ids}: none of its 1 ids") and "\n" not in err
