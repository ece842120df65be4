"""Opening the trackers of ``engine/loggers.py``: the logger names, the config as parameters,
TensorBoard's folder, and MLflow's store (tracking URI, local SQLite default, experiment, run).

An MLflow store is opened without retries (``_fail_fast_http``), so a bad URI or an unreachable
server is one line before any training. MLflow and TensorBoard are imported only here, inside
functions, and only when asked for.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from metastasis.config import TrainConfig
from metastasis.errors import MetastasisError, first_line

log = logging.getLogger(__name__)

LOGGERS = ("csv", "tensorboard", "mlflow")
MLFLOW_FILE = "mlflow.json"  # the MLflow run of this run folder (for --resume)
TENSORBOARD_DIR = "tensorboard"
_INSTALL = "pip install 'metastasis[track]'"


def logger_names(value: str | Sequence[str]) -> list[str]:
    """``"csv,mlflow"`` or ``["csv", "tensorboard,mlflow"]`` -> known names, in order, once each."""
    items = [value] if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        for name in str(item).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in LOGGERS:
                raise MetastasisError(f"unknown logger {name!r}; known: {', '.join(LOGGERS)}")
            if name not in names:
                names.append(name)
    return names


def flat_config(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved config as one level: ``model_kwargs.dropout``; lists joined by commas."""
    flat: dict[str, Any] = {}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                add(f"{prefix}.{key}", inner)
        elif isinstance(value, list | tuple):
            flat[prefix] = ",".join(str(v) for v in value)
        else:
            flat[prefix] = value

    for key, value in cfg.to_dict().items():
        add(key, value)
    return flat


def config_params(cfg: TrainConfig) -> dict[str, str]:
    """MLflow's parameters for ``cfg``: strings, cut at 250 characters as Lightning's
    ``MLFlowLogger.log_hyperparams`` cuts them."""
    return {k: str(v)[:250] for k, v in flat_config(cfg).items()}


def default_tracking_uri(store_dir: Path) -> str:
    """MLflow's local store for the runs in ``store_dir``: ``sqlite:///STORE_DIR/mlflow.db``."""
    return "sqlite:///" + str(store_dir.resolve() / "mlflow.db")


def _artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store go beside its database (``mlruns/``); a server or another
    database chooses its own."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///") :]).parent / "mlruns").resolve().as_uri()


@contextlib.contextmanager
def _fail_fast_http() -> Iterator[None]:
    """No retries with back-off while the run is opened: an unreachable server is reported in
    seconds, not minutes (unless the user set MLflow's own variables)."""
    changed = {
        name: value
        for name, value in (
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"),
            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "20"),
        )
        if name not in os.environ
    }
    os.environ.update(changed)
    try:
        yield
    finally:
        for name in changed:
            os.environ.pop(name, None)


def open_tensorboard(run_dir: Path, resume: bool) -> Any:
    from lightning.fabric.loggers.tensorboard import TensorBoardLogger

    _require_tensorboard()
    # RUN/tensorboard/ itself (no name/version subfolders). Resumed: the history is logged again
    # from epoch 1 and TensorBoard hides what the stopped process wrote (purge_step).
    extra: dict[str, Any] = {"purge_step": 1} if resume else {}
    return TensorBoardLogger(
        root_dir=run_dir / TENSORBOARD_DIR, name="", version="", default_hp_metric=False, **extra
    )


def resolve_tracking_uri(cfg: TrainConfig, store_dir: Path) -> str:
    """``cfg.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else the store in ``store_dir``."""
    return (
        cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(store_dir)
    )


def _require_mlflow() -> None:
    from lightning.pytorch.loggers.mlflow import _MLFLOW_AVAILABLE

    if not _MLFLOW_AVAILABLE:
        raise MetastasisError(f"--logger mlflow needs MLflow: {_INSTALL}")


def _require_tensorboard() -> None:
    from lightning.fabric.loggers.tensorboard import _TENSORBOARD_AVAILABLE

    if not _TENSORBOARD_AVAILABLE:
        raise MetastasisError(f"--logger tensorboard needs TensorBoard: {_INSTALL}")


def prepare_tracking(cfg: TrainConfig, *, experiment: str, store_dir: Path) -> None:
    """Before several runs (a search's trials, its worker processes) log to one store: check
    that the trackers are installed and the store reachable (one line if not), and create the
    MLflow store and experiment once, so that workers do not race to create them."""
    names = logger_names(cfg.loggers)
    if "tensorboard" in names:
        _require_tensorboard()
    if "mlflow" not in names:
        return
    _require_mlflow()
    uri = resolve_tracking_uri(cfg, store_dir)
    try:
        with _fail_fast_http():
            _ensure_experiment(uri, experiment)
    except Exception as exc:
        raise MetastasisError(f"MLflow tracking URI {uri}: {first_line(exc)}") from None


def _ensure_experiment(uri: str, experiment: str) -> None:
    """Create the store (a SQLite file's folder) and the experiment where they do not exist."""
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(uri)
    if client.get_experiment_by_name(experiment) is None:
        client.create_experiment(experiment, artifact_location=_artifact_location(uri))


def open_mlflow(
    cfg: TrainConfig,
    run_dir: Path,
    resume: bool,
    *,
    experiment: str,
    run_name: str,
    tags: dict[str, str],
    store_dir: Path,
) -> Any:
    from lightning.pytorch.loggers import MLFlowLogger

    _require_mlflow()
    uri, run_id = resolve_tracking_uri(cfg, store_dir), None
    saved = run_dir / MLFLOW_FILE
    if resume and saved.is_file():
        info = json.loads(saved.read_text())
        uri, run_id = info["tracking_uri"], info["run_id"]
    try:
        with _fail_fast_http():
            if run_id is None:
                _ensure_experiment(uri, experiment)
            logger = MLFlowLogger(
                experiment_name=experiment,
                run_name=run_name,
                tracking_uri=uri,
                tags=tags,
                artifact_location=_artifact_location(uri),
                run_id=run_id,
            )
            if run_id is None:
                logger.log_hyperparams(config_params(cfg))
            else:
                logger.experiment.update_run(run_id, status="RUNNING")
    except MetastasisError:
        raise
    except Exception as exc:
        raise MetastasisError(f"MLflow tracking URI {uri}: {first_line(exc)}") from None
    log.info("MLflow: experiment %r, run %s at %s", experiment, logger.run_id, uri)
    return logger
