import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from metastasis.checkpoint import load_checkpoint
from metastasis.config import TrainConfig, resolve_config
from metastasis.engine.trainer import RunResult
from metastasis.errors import DataError, MetastasisError
from metastasis.training import fit  # `metastasis.fit`: the engine's fit and the run's exports

# What `fit` (the engine, then the exports) writes: data only ...
DATA_FILES = {
    "config.yaml",
    "data.json",
    "splits.csv",
    "excluded.csv",
    "environment.json",
    "history.csv",
    "metrics.json",
    "val_predictions.csv",
    "checkpoint.pt",
    "model.onnx",
    "MODEL_CARD.md",
}
# ... and what `train` adds: the figures and the page.
REPORT_FILES = {
    "history.png",
    "roc.png",
    "pr.png",
    "confusion_matrix.png",
    "reliability.png",
    "augmentations.png",
    "report.html",
}
RUN_FILES = DATA_FILES | REPORT_FILES
VAL_KEYS = {
    "accuracy",
    "roc_auc",
    "pr_auc",
    "sensitivity",
    "specificity",
    "f1",
    "confusion_matrix",
    "threshold",
}


def test_one_epoch_fit_writes_a_complete_run_folder(
    trained_run: RunResult, demo_data: Path
) -> None:
    run = trained_run.run_dir
    assert {p.name for p in run.iterdir()} == RUN_FILES
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["val"]) >= VAL_KEYS and metrics["best_epoch"] == 1
    assert metrics["val"]["n"] == 64
    assert sum(map(sum, metrics["val"]["confusion_matrix"])) == 64
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1]
    for col in ("train_loss", "val_loss", "val_roc_auc", "seconds", "train_patches_per_s"):
        assert history[col].notna().all() and (history[col] > 0).all()
    splits = pd.read_csv(run / "splits.csv")
    assert list(splits.columns) == ["id", "truth", "split"]
    assert splits["split"].value_counts().to_dict() == {"train": 160, "val": 64}
    data = json.loads((run / "data.json").read_text())
    assert data["train"]["n_used"] == 160 and len(data["train"]["fingerprint"]) == 20
    env = json.loads((run / "environment.json").read_text())
    assert env["versions"]["torch"] and env["torch_threads"] >= 1 and env["device"] == "cpu"
    assert env["loader_workers"] == 0 and env["malloc"] == "glibc"  # the CPU defaults
    assert env["eval_batch_size"] == 32
    assert resolve_config(run / "config.yaml").out == str(run)
    bundle = load_checkpoint(run)
    assert bundle.arch == "baseline-cnn" and bundle.threshold == 0.5
    assert bundle.preprocessing.input_size == 96 and bundle.config["epochs"] == 1
    preds = pd.read_csv(run / "val_predictions.csv")
    assert list(preds.columns) == ["id", "probability", "prediction", "truth"]
    assert len(preds) == 64 and preds["probability"].between(0, 1).all()
    assert (preds["prediction"] == (preds["probability"] >= bundle.threshold)).all()


def test_seed_split_is_stratified_and_reproducible(
    demo_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    results = []
    for name in ("a", "b"):
        cfg = TrainConfig(
            data=str(demo_data / "train"), epochs=1, batch_size=64, seed=7, out=str(tmp_path / name)
        )
        with caplog.at_level(logging.INFO, logger="metastasis.engine.trainer"):
            results.append(fit(cfg, progress=False))
    # no progress bar: the epoch's progress and speed are logged instead (2 batches of 64)
    steps = [r.getMessage() for r in caplog.records if "batches (" in r.getMessage()]
    assert [m.split(", ")[0] for m in steps] == [
        "epoch 1/1: 1/2 batches (50%)",
        "epoch 1/1: 2/2 batches (100%)",
    ] * 2
    assert all(float(m.split(", ")[1].split()[0]) > 0 for m in steps)
    a, b = (pd.read_csv(r.run_dir / "splits.csv") for r in results)
    pd.testing.assert_frame_equal(a, b)
    val = a[a["split"] == "val"]
    assert len(val) == 32  # 20% of 160
    labels = pd.read_csv(results[0].run_dir / "val_predictions.csv")["truth"]
    assert abs(labels.mean() - a["truth"].mean()) < 0.05
    # same seed, same data order and initialisation: same numbers
    ha, hb = (pd.read_csv(r.run_dir / "history.csv") for r in results)
    pd.testing.assert_series_equal(ha["val_roc_auc"], hb["val_roc_auc"])
    pd.testing.assert_series_equal(ha["train_loss"], hb["train_loss"])
    assert list(ha["lr"]) == [1e-3]  # the constant rate of the last step
    # `fit` alone (the engine and the exports) writes the data files, no figures and no page
    assert {p.name for p in results[0].run_dir.iterdir()} == DATA_FILES
    assert results[0].val is not None and len(results[0].val.probs) == 32


def test_refuses_to_overwrite_a_run_folder(trained_run: RunResult, demo_data: Path) -> None:
    cfg = TrainConfig(data=str(demo_data / "train"), out=str(trained_run.run_dir))
    with pytest.raises(MetastasisError, match="already exists"):
        fit(cfg, progress=False)


def test_unlabelled_training_data_is_refused(tmp_path: Path, kaggle_data: Path) -> None:
    cfg = TrainConfig(data=str(kaggle_data), split="test", out=str(tmp_path / "r"))
    with pytest.raises(DataError, match="has no labels"):
        fit(cfg, progress=False)


def test_missing_data_option(tmp_path: Path) -> None:
    with pytest.raises(MetastasisError, match="no training data"):
        fit(TrainConfig(out=str(tmp_path / "r")), progress=False)


def test_on_epoch_end_sees_each_epoch_and_can_stop_the_run(demo_data: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, float]] = []

    class Stop(Exception):
        pass

    def hook(epoch: int, row: dict) -> None:
        seen.append((epoch, row["val_roc_auc"]))
        if epoch == 2:
            raise Stop

    cfg = TrainConfig(
        data=str(demo_data / "train"), epochs=5, batch_size=64, out=str(tmp_path / "r")
    )
    with pytest.raises(Stop):
        fit(cfg, progress=False, on_epoch_end=hook)
    assert [e for e, _ in seen] == [1, 2]
    assert len(pd.read_csv(tmp_path / "r" / "history.csv")) == 2
