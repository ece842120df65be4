"""Experiment tracking: real trainings logged to real TensorBoard event files and a real MLflow
store (SQLite, and a real `mlflow server` where full mlflow is installed), read back."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from metastasis.cli import main
from metastasis.config import TrainConfig, resolve_config
from metastasis.engine.loggers import (
    MLFLOW_FILE,
    config_params,
    logger_names,
    open_loggers,
)
from metastasis.engine.trainer import fit
from metastasis.errors import MetastasisError
from metastasis.training import train

pytest.importorskip("mlflow", reason="the track extra (mlflow) is not installed")
pytest.importorskip("tensorboard", reason="the track extra (tensorboard) is not installed")

from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)


class Crash(Exception):
    pass


@pytest.fixture(autouse=True)
def no_tracking_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def tracked_run(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`metastasis train` for 2 epochs with every logger, into the default MLflow store."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    run = tmp_path_factory.mktemp("tracked") / "runs" / "r1"
    args = ["-q", "train", "--data", str(demo_data / "train")]
    args += ["--val-data", str(demo_data / "valid"), "--epochs", "2", "--batch-size", "32"]
    args += ["--schedule", "cosine", "--logger", "csv,tensorboard", "--logger", "mlflow"]
    assert main([*args, "--out", str(run), "--no-progress"]) == 0
    return run


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def mlflow_run(run: Path) -> tuple[MlflowClient, str]:
    info = json.loads((run / MLFLOW_FILE).read_text())
    return MlflowClient(info["tracking_uri"]), info["run_id"]


def assert_history_logged(
    history: pd.DataFrame, logged: dict[str, list[tuple[int, float]]]
) -> None:
    """Every metric of every epoch, once, equal to history.csv (TensorBoard keeps float32)."""
    for column in history.columns.drop("epoch"):
        assert [step for step, _ in logged[column]] == list(history["epoch"]), column
        assert [v for _, v in logged[column]] == pytest.approx(list(history[column]), rel=1e-6)


def test_tensorboard_events_hold_every_epoch_of_the_history(tracked_run: Path) -> None:
    history = pd.read_csv(tracked_run / "history.csv")
    assert "lr" in history and history["lr"].iloc[0] > history["lr"].iloc[1]  # cosine schedule
    scalars = tensorboard_scalars(tracked_run / "tensorboard")
    assert_history_logged(history, scalars)
    metrics = json.loads((tracked_run / "metrics.json").read_text())
    assert scalars["final_val_roc_auc"][0][1] == pytest.approx(metrics["val"]["roc_auc"], rel=1e-6)


def test_mlflow_store_holds_metrics_params_and_artifacts(tracked_run: Path) -> None:
    client, run_id = mlflow_run(tracked_run)
    # the default store: MLflow's layout (mlflow.db, mlruns/) beside the run folder
    assert client.tracking_uri == f"sqlite:///{tracked_run.parent.resolve()}/mlflow.db"
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "r1"
    assert client.get_experiment(run.info.experiment_id).name == "metastasis"
    assert run.info.artifact_uri.startswith((tracked_run.parent / "mlruns").resolve().as_uri())

    history = pd.read_csv(tracked_run / "history.csv")
    logged = {
        column: [(m.step, m.value) for m in client.get_metric_history(run_id, column)]
        for column in history.columns.drop("epoch")
    }
    assert_history_logged(history, logged)
    assert logged["lr"] == [(e, lr) for e, lr in zip(history["epoch"], history["lr"])]

    cfg = resolve_config(tracked_run / "config.yaml")
    assert cfg.loggers == ["csv", "tensorboard", "mlflow"]
    assert run.data.params == config_params(cfg)
    assert run.data.params["schedule"] == "cosine" and run.data.params["epochs"] == "2"
    metrics = json.loads((tracked_run / "metrics.json").read_text())
    assert run.data.metrics["final_val_roc_auc"] == metrics["val"]["roc_auc"]
    assert run.data.metrics["best_epoch"] == metrics["best_epoch"]
    artifacts = {f.path for f in client.list_artifacts(run_id)}
    expected = {"report.html", "roc.png", "pr.png", "history.png", "confusion_matrix.png"}
    assert expected | {"metrics.json", "config.yaml", "history.csv"} <= artifacts


def test_config_params_are_flat_strings() -> None:
    cfg = TrainConfig(model_kwargs={"dropout": 0.3}, loggers=["csv", "mlflow"], epochs=3)
    params = config_params(cfg)
    assert params["model_kwargs.dropout"] == "0.3" and "model_kwargs" not in params
    assert params["loggers"] == "csv,mlflow" and params["epochs"] == "3"
    assert params["tracking_uri"] == "None"
    assert logger_names(["CSV", "tensorboard,mlflow", "csv"]) == ["csv", "tensorboard", "mlflow"]
    with pytest.raises(MetastasisError, match="unknown logger 'wandb'"):
        logger_names("csv,wandb")


def test_resume_continues_the_same_mlflow_run_and_tensorboard_folder(
    demo_data: Path, tracked_run: Path, tmp_path: Path
) -> None:
    store = f"sqlite:///{tracked_run.parent.resolve()}/mlflow.db"  # created already
    run = tmp_path / "run"
    cfg = TrainConfig(
        data=str(demo_data / "train"),
        val_data=str(demo_data / "valid"),
        epochs=3,
        batch_size=32,
        loggers=["tensorboard", "mlflow"],
        tracking_uri=store,
        experiment="resume-test",
        out=str(run),
    )
    # Killed after epoch 2's history row and state were written, before its trackers logged it.
    with pytest.raises(Crash), open_loggers(cfg, run) as trackers:

        def stop_in_epoch_two(epoch: int, row: dict[str, Any]) -> None:
            if epoch == 2:
                raise Crash
            trackers.on_epoch_end(epoch, row)

        fit(cfg, progress=False, on_epoch_end=stop_in_epoch_two)
    client, run_id = mlflow_run(run)
    assert client.get_run(run_id).info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [1]
    assert len(pd.read_csv(run / "history.csv")) == 2

    result = train(cfg, progress=False, resume=True)
    assert json.loads((run / MLFLOW_FILE).read_text())["run_id"] == run_id
    assert client.get_run(run_id).info.status == "FINISHED"
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3] and result.best_epoch >= 1
    logged = {
        column: [(m.step, m.value) for m in client.get_metric_history(run_id, column)]
        for column in history.columns.drop("epoch")
    }
    assert_history_logged(history, logged)  # epoch 2 caught up from history.csv, none twice
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert_history_logged(history, tensorboard_scalars(run / "tensorboard"))


def test_a_failure_before_the_first_epoch_leaves_no_mlflow_run(
    tracked_run: Path, tmp_path: Path
) -> None:
    store = f"sqlite:///{tracked_run.parent.resolve()}/mlflow.db"
    cfg = TrainConfig(data=str(tmp_path / "missing"), loggers=["mlflow"], tracking_uri=store)
    cfg = cfg.replace(experiment="early-failure", out=str(tmp_path / "run"))
    with pytest.raises(MetastasisError):
        train(cfg, progress=False)
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("early-failure")
    assert experiment is not None
    assert client.search_runs([experiment.experiment_id]) == []  # deleted, not left RUNNING


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "uri",
    ["http://127.0.0.1:{port}", "nosuchscheme://somewhere/else"],
    ids=["unreachable-server", "unknown-scheme"],
)
def test_a_bad_tracking_uri_stops_before_training_with_one_line(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], uri: str
) -> None:
    uri = uri.format(port=free_port())
    run = tmp_path / "run"
    args = ["train", "--data", str(demo_data / "train"), "--epochs", "1", "--logger", "mlflow"]
    assert main([*args, "--tracking-uri", uri, "--out", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"metastasis train: error: MLflow tracking URI {uri}: "), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not run.exists()  # before training: no run folder


def test_an_unknown_logger_is_refused_by_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["train", "--data", "x", "--logger", "csv,wandb"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--logger: invalid choice: 'wandb' (choose from csv, tensorboard, mlflow)" in err


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 (full mlflow; skipped with only mlflow-skinny)."""
    try:
        import mlflow.server.handlers  # noqa: F401  (only in full mlflow)
    except ImportError:
        pytest.skip("`mlflow server` needs full mlflow (pip install mlflow)")
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{root / 'server.db'}"]
    command += ["--artifacts-destination", str(root / "artifacts")]
    log = (root / "server.log").open("wb")
    server = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.mark.slow  # about a minute on a busy 2-core machine, most of it the server starting
def test_tracking_server_url(demo_data: Path, tmp_path: Path, mlflow_server: str) -> None:
    run = tmp_path / "run"
    args = ["-q", "train", "--data", str(demo_data / "train"), "--epochs", "1"]
    args += ["--logger", "mlflow", "--tracking-uri", mlflow_server, "--experiment", "served"]
    assert main([*args, "--out", str(run), "--no-progress"]) == 0
    client, run_id = mlflow_run(run)
    assert client.tracking_uri == mlflow_server
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert client.get_experiment(got.info.experiment_id).name == "served"
    history = pd.read_csv(run / "history.csv")
    assert got.data.metrics["val_roc_auc"] == history["val_roc_auc"].iloc[-1]
    assert {"report.html", "roc.png"} <= {f.path for f in client.list_artifacts(run_id)}
    assert not (tmp_path / "mlflow.db").exists()  # nothing local with a server
