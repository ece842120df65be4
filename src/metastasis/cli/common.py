"""Options shared by several commands."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


def add_data_options(p: argparse.ArgumentParser, training: bool = False) -> None:
    p.add_argument(
        "--cache-dir", help="cache folder (default $METASTASIS_CACHE or ~/.cache/metastasis)"
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars, for jobs without a terminal"
        + ("; training logs each tenth of an epoch with its speed instead" if training else ""),
    )


def progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "no_progress", False)


# Training settings as flags: name -> argparse keywords. `train` offers all of them; `tune`
# the ones that make sense for every trial of a search.
TRAINING_FLAGS: dict[str, dict[str, Any]] = {
    "data": {"help": "training data"},
    "split": {"help": "split of --data to train on (default: train)"},
    "val_data": {"help": "validation data (default: stratified split of --data)"},
    "val_split": {"help": "split of --val-data"},
    "val_fraction": {"type": float, "help": "fraction held out when no --val-data"},
    "model": {"help": "registered model name (metastasis models)"},
    "input_size": {"type": int, "help": "resize patches to this side (default: model's)"},
    "mpp": {"type": float, "help": "microns per pixel of the training patches (PCam: 0.972)"},
    "epochs": {"type": int},
    "batch_size": {"type": int},
    "lr": {"type": float, "help": "learning rate"},
    "weight_decay": {"type": float},
    "optimizer": {"choices": ["adam", "adamw", "sgd"]},
    "schedule": {"choices": ["constant", "cosine", "onecycle"], "help": "learning-rate schedule"},
    "warmup_epochs": {"type": float, "help": "warm-up epochs (cosine, onecycle)"},
    "label_smoothing": {"type": float},
    "class_balance": {"choices": ["none", "loss", "sampler"]},
    "ema_decay": {"type": float, "help": "EMA of weights, e.g. 0.999 (0: off)"},
    "early_stopping": {"type": int, "help": "patience in epochs on val AUC (0: off)"},
    "augment": {"help": "augmentation preset: none, flips, d4, pathology, strong"},
    "threshold_method": {"help": "fixed, youden or sensitivity:S (chosen on validation)"},
    "tta": {"choices": ["none", "d4"], "help": "test-time augmentation for the final validation"},
    "seed": {"type": int},
    "accelerator": {"help": "auto, cpu, cuda, mps"},
    "devices": {"type": int, "help": "processes per node (DDP when > 1)"},
    "num_nodes": {"type": int},
    "strategy": {"help": "Fabric strategy (auto, ddp, ...)"},
    "precision": {"help": "32-true, bf16-mixed, 16-mixed"},
    "num_workers": {"type": int, "help": "DataLoader worker processes"},
    "threads": {"type": int, "help": "torch CPU threads"},
    "loggers": {
        "flag": "--logger",
        "action": "extend",
        "type": lambda text: _logger_names(text),
        "metavar": "NAME",
        "help": "experiment trackers besides history.csv: tensorboard, mlflow (repeat the flag "
        "or separate with commas; default csv: history.csv only)",
    },
    "tracking_uri": {
        "help": "MLflow tracking URI (http://host:5000, sqlite:///mlflow.db; default "
        "$MLFLOW_TRACKING_URI, else sqlite:///RUN/../mlflow.db)"
    },
    "experiment": {"help": "MLflow experiment name (default metastasis)"},
}


def _logger_names(text: str) -> list[str]:
    from metastasis.engine.loggers import logger_names
    from metastasis.errors import MetastasisError

    try:
        return logger_names(text)
    except MetastasisError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_training_options(
    p: argparse.ArgumentParser | argparse._ArgumentGroup, names: Sequence[str]
) -> None:
    for name in names:
        spec = dict(TRAINING_FLAGS[name])
        flag = spec.pop("flag", "--" + name.replace("_", "-"))
        p.add_argument(flag, dest=name, **spec)


def training_overrides(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The given training flags (None where not given) plus the cache folder."""
    return {k: getattr(args, k) for k in (*names, "cache_dir")}
