"""Options shared by several commands."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir", help="cache folder (default $METASTASIS_CACHE or ~/.cache/metastasis)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


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
    "epochs": {"type": int},
    "batch_size": {"type": int},
    "lr": {"type": float, "help": "learning rate"},
    "weight_decay": {"type": float},
    "optimizer": {"choices": ["adam", "adamw", "sgd"]},
    "augment": {"help": "augmentation preset: none, flips"},
    "seed": {"type": int},
    "accelerator": {"help": "auto, cpu, cuda, mps"},
    "devices": {"type": int},
    "precision": {"help": "32-true, bf16-mixed, 16-mixed"},
    "num_workers": {"type": int, "help": "DataLoader worker processes"},
    "threads": {"type": int, "help": "torch CPU threads"},
}


def add_training_options(
    p: argparse.ArgumentParser | argparse._ArgumentGroup, names: Sequence[str]
) -> None:
    for name in names:
        p.add_argument("--" + name.replace("_", "-"), **TRAINING_FLAGS[name])


def training_overrides(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The given training flags (None where not given) plus the cache folder."""
    return {k: getattr(args, k) for k in (*names, "cache_dir")}
