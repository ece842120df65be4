"""Experiment tracking: each epoch's history row, the resolved config and the run folder's
outputs sent to TensorBoard and MLflow through Lightning's logger classes.

``cfg.loggers`` names the trackers: ``csv`` (the default) is the run folder's ``history.csv``,
which ``fit`` always writes; ``tensorboard`` writes event files under ``RUN/tensorboard/``;
``mlflow`` logs to ``cfg.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else a local SQLite
store beside the run folder (``RUN/../mlflow.db``, artifacts in ``RUN/../mlruns/``: MLflow's own
default layout, ``sqlite:///mlflow.db`` + ``./mlruns``, rooted where the runs are instead of in
the working directory; MLflow 3 refuses its old file store unless told otherwise).

Every metric of a history row is logged with ``step = epoch`` (names as in ``history.csv``,
``lr`` included); the config goes in flattened (``model_kwargs.dropout``) as MLflow parameters
and TensorBoard hyper-parameters; at the end MLflow gets the plots, report, metrics and config as
artifacts and the final validation metrics as ``final_val_*``. A resumed run (``train
--resume``) continues the same MLflow run (its id is kept in ``RUN/mlflow.json``) and the same
TensorBoard folder, and logs what the interrupted process had not logged, from ``history.csv``.
Only process 0 of a distributed run logs. MLflow and TensorBoard are imported only when asked
for (the ``track`` extra); opening them (names, stores, URIs) is in ``trackers.py``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from metastasis.config import TrainConfig
from metastasis.engine.trackers import (
    LOGGERS,
    MLFLOW_FILE,
    TENSORBOARD_DIR,
    config_params,
    flat_config,
    logger_names,
    open_mlflow,
    open_tensorboard,
    prepare_tracking,
    resolve_tracking_uri,
)
from metastasis.errors import first_line
from metastasis.io import atomic_write_json

__all__ = [
    "LOGGERS",
    "MLFLOW_FILE",
    "TENSORBOARD_DIR",
    "RunLoggers",
    "config_params",
    "flat_config",
    "logger_names",
    "open_loggers",
    "prepare_tracking",
    "resolve_tracking_uri",
]

log = logging.getLogger(__name__)

# Run-folder files logged as MLflow artifacts (report.html shows the PNGs beside it).
ARTIFACTS = (
    "report.html",
    "metrics.json",
    "config.yaml",
    "history.csv",
    "data.json",
    "environment.json",
    "MODEL_CARD.md",
)

EpochHook = Callable[[int, dict[str, Any]], None]


def _epoch_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in row.items()
        if k != "epoch" and isinstance(v, int | float) and not isinstance(v, bool)
    }


def _is_rank_zero() -> bool:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


class RunLoggers:
    """The trackers of one run; ``on_epoch_end`` is ``fit``'s per-epoch hook. Use it as a
    context manager: leaving it with an exception ends the MLflow run as failed (killed on
    Ctrl-C); a run that failed before its first epoch is deleted from the store."""

    def __init__(
        self,
        run_dir: Path,
        params: dict[str, Any],
        tensorboard: Any = None,
        mlflow: Any = None,
        resume: bool = False,
        killed_on: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.run_dir = run_dir
        self.killed_on: tuple[type[BaseException], ...] = (KeyboardInterrupt, *killed_on)
        self.params = params
        self.tensorboard = tensorboard
        self.mlflow = mlflow
        self.resume = resume
        self.epochs_logged = 0
        self.closed = False
        self._caught_up = not resume
        self._warned: set[str] = set()

    @property
    def active(self) -> bool:
        return self.tensorboard is not None or self.mlflow is not None

    def chain(self, hook: EpochHook | None) -> EpochHook:
        """``on_epoch_end`` followed by ``hook`` (e.g. a search's pruning report)."""

        def both(epoch: int, row: dict[str, Any]) -> None:
            self.on_epoch_end(epoch, row)
            if hook is not None:
                hook(epoch, row)

        return both

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        if not self.active:
            return
        rows = [row]
        if not self._caught_up:  # resumed: first what the stopped process may not have logged
            rows = [r for r in self._history() if int(r["epoch"]) < epoch] + rows
            self._caught_up = True
        if self.mlflow is not None and self.epochs_logged == 0:  # the run folder exists now
            self._write_mlflow_file()
        if self.tensorboard is not None:
            self._guard("TensorBoard", lambda: self._log_tensorboard(rows))
        if self.mlflow is not None:
            self._guard("MLflow", lambda: self._log_mlflow(rows))
        self.epochs_logged += 1

    def finish(self, run_dir: Path | None = None, metrics: Mapping[str, Any] | None = None) -> None:
        """The final validation metrics, the config (TensorBoard's hyper-parameters) and the run
        folder's outputs (MLflow artifacts); then close."""
        if not self.active or self.closed:
            return
        run_dir = run_dir or self.run_dir
        if metrics is None and (run_dir / "metrics.json").is_file():
            metrics = json.loads((run_dir / "metrics.json").read_text())
        final = _final_metrics(metrics or {})
        step = self.epochs_logged or None
        if self.tensorboard is not None:
            tb = self.tensorboard
            self._guard("TensorBoard", lambda: tb.log_hyperparams(self.params, final, step))
        if self.mlflow is not None:
            self._guard("MLflow", lambda: self._finish_mlflow(run_dir, final, step))
        self.close("FINISHED")

    def close(self, status: str = "FINISHED") -> None:
        """End the trackers: MLflow status FINISHED, FAILED or KILLED."""
        if self.closed:
            return
        self.closed = True
        if self.tensorboard is not None:
            self.tensorboard.finalize("success")
        if self.mlflow is not None:
            mlf = self.mlflow
            if status != "FINISHED" and self.epochs_logged == 0 and not self.resume:
                self._guard("MLflow", lambda: mlf.experiment.delete_run(mlf.run_id))
            else:
                self._guard("MLflow", lambda: mlf.finalize(status))

    def __enter__(self) -> RunLoggers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close("FINISHED")
        else:
            self.close("KILLED" if issubclass(kind, self.killed_on) else "FAILED")

    # -- the trackers ------------------------------------------------------------------------

    def _history(self) -> list[dict[str, Any]]:
        import pandas as pd

        path = self.run_dir / "history.csv"
        if not path.is_file():
            return []
        return [{str(k): v for k, v in r.items()} for r in pd.read_csv(path).to_dict("records")]

    def _log_tensorboard(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            self.tensorboard.log_metrics(_epoch_metrics(r), step=int(r["epoch"]))
        self.tensorboard.experiment.flush()  # an epoch on disk when the next starts

    def _log_mlflow(self, rows: list[dict[str, Any]]) -> None:
        mlf = self.mlflow
        if self.resume and len(rows) > 1:  # resumed: skip epochs the run already has
            done = {m.step for m in mlf.experiment.get_metric_history(mlf.run_id, "val_loss")}
            rows = [r for r in rows if int(r["epoch"]) not in done]
        for r in rows:
            mlf.log_metrics(_epoch_metrics(r), step=int(r["epoch"]))

    def _finish_mlflow(self, run_dir: Path, final: dict[str, float], step: int | None) -> None:
        mlf = self.mlflow
        if final:
            mlf.log_metrics(final, step=step)
        client, run_id = mlf.experiment, mlf.run_id
        for path in sorted(run_dir.glob("*.png")):
            client.log_artifact(run_id, str(path))
        for name in ARTIFACTS:
            if (run_dir / name).is_file():
                client.log_artifact(run_id, str(run_dir / name))

    def _write_mlflow_file(self) -> None:
        mlf = self.mlflow
        atomic_write_json(
            self.run_dir / MLFLOW_FILE,
            {
                "tracking_uri": mlf._tracking_uri,
                "experiment_id": mlf.experiment_id,
                "run_id": mlf.run_id,
            },
        )

    def _guard(self, tracker: str, call: Callable[[], Any]) -> None:
        """A tracker failing during training is reported (once per tracker) and training goes on:
        history.csv and the run folder keep everything."""
        try:
            call()
        except Exception as exc:
            if tracker not in self._warned:
                self._warned.add(tracker)
                log.warning("%s: %s (training goes on)", tracker, first_line(exc))


def _final_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    val = metrics.get("val", {})
    final = {
        f"final_val_{k}": float(v)
        for k, v in val.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    if "best_epoch" in metrics:
        final["best_epoch"] = float(metrics["best_epoch"])
    return final


def open_loggers(
    cfg: TrainConfig,
    run_dir: Path | str,
    resume: bool = False,
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    store_dir: Path | None = None,
    killed_on: tuple[type[BaseException], ...] = (),
) -> RunLoggers:
    """The trackers ``cfg.loggers`` asks for, for the run in ``run_dir`` (which ``fit`` creates).

    The MLflow run is created (or, with ``resume``, found again) here, so a bad tracking URI or an
    unreachable server stops the command with one line before training starts. ``experiment``
    overrides ``cfg.experiment``; ``store_dir`` is where the default local store goes (default:
    the run folder's parent); leaving the context with one of ``killed_on`` (besides Ctrl-C, e.g. a
    search's pruning) ends the MLflow run as killed rather than failed."""
    run_dir = Path(run_dir)
    names = logger_names(cfg.loggers)
    params = flat_config(cfg)
    if not ({"tensorboard", "mlflow"} & set(names)) or not _is_rank_zero():
        return RunLoggers(run_dir, params, killed_on=killed_on)
    tensorboard = open_tensorboard(run_dir, resume) if "tensorboard" in names else None
    mlflow = None
    if "mlflow" in names:
        mlflow = open_mlflow(
            cfg,
            run_dir,
            resume,
            experiment=experiment or cfg.experiment,
            run_name=run_name or run_dir.name,
            tags={"metastasis.run_dir": str(run_dir.resolve()), **(tags or {})},
            store_dir=store_dir or run_dir.resolve().parent,
        )
    return RunLoggers(run_dir, params, tensorboard, mlflow, resume, killed_on)
