"""A search's trials as runs of one MLflow experiment (and TensorBoard folders), read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from metastasis.config import TrainConfig
from metastasis.engine.loggers import MLFLOW_FILE
from metastasis.engine.trainer import RunResult
from metastasis.tune import TuneSettings, tune
from metastasis.tune.space import parse_space

pytest.importorskip("optuna", reason="the hpo extra (optuna) is not installed")
pytest.importorskip("mlflow", reason="the track extra (mlflow) is not installed")
pytest.importorskip("tensorboard", reason="the track extra (tensorboard) is not installed")

from mlflow.tracking import MlflowClient


@pytest.fixture(autouse=True)
def no_tracking_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def settings_for(demo: Path, out: Path, **changes: Any) -> TuneSettings:
    base = TrainConfig(
        data=str(demo / "train"),
        val_data=str(demo / "valid"),
        epochs=1,
        batch_size=64,
        loggers=["tensorboard", "mlflow"],
    )
    values: dict[str, Any] = {
        "base": base,
        "space": parse_space({"lr": {"low": 3e-4, "high": 3e-3, "log": True}}),
        "study_dir": out,
        "study_name": "tracked-study",
        "sampler": "random",
        "trials": 2,
    }
    return TuneSettings(**{**values, **changes})


def test_each_trial_is_a_run_of_the_study_experiment(demo_data: Path, tmp_path: Path) -> None:
    settings = settings_for(demo_data, tmp_path / "study")
    result = tune(settings, progress=False)
    assert result.counts["complete"] == 2
    client = MlflowClient(f"sqlite:///{(tmp_path / 'study').resolve()}/mlflow.db")
    experiment = client.get_experiment_by_name("tracked-study")  # --experiment not given
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], order_by=["tags.`optuna.trial`"])
    assert [r.data.tags["optuna.trial"] for r in runs] == ["0", "1"]
    table = pd.read_csv(result.files["trials"])
    for run, trial in zip(runs, table.itertuples(), strict=True):
        assert run.info.status == "FINISHED"
        assert run.data.tags["optuna.study"] == "tracked-study"
        assert run.data.tags["optuna.searched"] == "lr"
        assert float(run.data.params["lr"]) == pytest.approx(trial.lr, rel=1e-12)
        assert run.data.metrics["final_val_roc_auc"] == pytest.approx(trial.val_roc_auc)
        trial_dir = tmp_path / "study" / "trials" / str(trial.number)
        assert json.loads((trial_dir / MLFLOW_FILE).read_text())["run_id"] == run.info.run_id
        assert list((trial_dir / "tensorboard").glob("events.out.tfevents.*"))
        assert "report.html" in {f.path for f in client.list_artifacts(run.info.run_id)}


def test_pruned_trials_end_as_killed_runs(
    demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_fit(cfg: TrainConfig, on_epoch_end: Any = None, **_: Any) -> RunResult:
        """Training replaced by a curve that only depends on lr: higher lr, better AUC (real
        training as trials is the test above; this one is about pruned trials' run status)."""
        Path(str(cfg.out)).mkdir(parents=True)
        auc = 0.0
        for epoch in range(1, cfg.epochs + 1):
            auc = min(0.99, cfg.lr * 100 * epoch / cfg.epochs)
            on_epoch_end(epoch, {"epoch": epoch, "val_roc_auc": auc, "val_loss": 1 - auc})
        return RunResult(Path(str(cfg.out)), {"val": {"roc_auc": auc}}, cfg.epochs, pd.DataFrame())

    def fake_report(result: RunResult, cfg: TrainConfig) -> None:
        (result.run_dir / "report.html").write_text("<html></html>")

    # the names train() calls: its own module's fit, and the report function it imports
    monkeypatch.setattr("metastasis.training.fit", fake_fit)
    monkeypatch.setattr("metastasis.reports.run.write_run_report", fake_report)
    space = parse_space({"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "epochs": 4})
    base = settings_for(demo_data, tmp_path / "s").base.replace(
        loggers=["mlflow"], experiment="pruning"
    )
    settings = settings_for(
        demo_data, tmp_path / "s", base=base, space=space, sampler="tpe", trials=8
    )
    result = tune(settings, progress=False)
    client = MlflowClient(f"sqlite:///{(tmp_path / 's').resolve()}/mlflow.db")
    experiment = client.get_experiment_by_name("pruning")  # --experiment given
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 8
    status = {r.data.tags["optuna.trial"]: r.info.status for r in runs}
    table = pd.read_csv(result.files["trials"])
    expected = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}
    assert status == {str(n): expected[s] for n, s in zip(table["number"], table["state"])}
    assert "KILLED" in status.values(), "the median pruner never stopped a trial"
