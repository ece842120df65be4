"""The run's history: one row of numbers per epoch, its log line, ``history.csv`` and the hooks.

``history_row`` makes the row (losses, accuracy, ROC-AUC, seconds, patches/s and the learning
rate of the epoch's last step); ``EpochLog.epoch_end`` logs it, rewrites ``history.csv`` (rank 0)
and then calls each ``on_epoch_end(epoch, row)`` hook, such as a hyper-parameter search's pruner
or an experiment tracker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from metastasis.inference.batches import EpochOutput
from metastasis.io import atomic_path
from metastasis.metrics.classification import binary_metrics

log = logging.getLogger("metastasis.engine.trainer")  # the lines are the trainer's

EpochHook = Callable[[int, dict[str, Any]], None]


def nan_if_none(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def history_row(
    epoch: int,
    tr: EpochOutput,
    va: EpochOutput,
    threshold: float,
    seconds: float,
    lr: float = float("nan"),
) -> dict[str, Any]:
    """One epoch's numbers; ``lr``: the learning rate of its last optimiser step."""
    mt = binary_metrics(tr.labels, tr.probs, threshold)
    mv = binary_metrics(va.labels, va.probs, threshold)
    return {
        "epoch": epoch,
        "train_loss": tr.loss,
        "train_accuracy": mt["accuracy"],
        "train_roc_auc": nan_if_none(mt["roc_auc"]),
        "val_loss": va.loss,
        "val_accuracy": mv["accuracy"],
        "val_roc_auc": nan_if_none(mv["roc_auc"]),
        "val_pr_auc": nan_if_none(mv["pr_auc"]),
        "seconds": round(seconds, 3),
        "train_seconds": round(tr.seconds, 3),
        "train_patches_per_s": round(tr.patches_per_s, 1),
        "val_seconds": round(va.seconds, 3),
        "lr": lr,
    }


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    with atomic_path(run_dir / "history.csv") as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


class EpochLog:
    """What follows each epoch once its checkpoint and training state are saved: the log line,
    ``history.csv`` (only where ``write``: rank 0) and the ``hooks``, in that order.

    ``history.csv`` is written last of the run's per-epoch files, so a row in it means that its
    epoch's checkpoint and state are on disk."""

    def __init__(
        self,
        run_dir: Path,
        epochs: int,
        history: list[dict[str, Any]],
        *,
        write: bool = True,
        hooks: Sequence[EpochHook | None] = (),
    ) -> None:
        self.run_dir, self.epochs, self.history, self.write = run_dir, epochs, history, write
        self.hooks = [hook for hook in hooks if hook is not None]

    def epoch_end(self, epoch: int, row: dict[str, Any], improved: bool) -> None:
        log.info(
            "epoch %d/%d  loss %.4f  acc %.4f | val loss %.4f  acc %.4f  auc %.4f | "
            "%.0f patches/s%s",
            epoch,
            self.epochs,
            row["train_loss"],
            row["train_accuracy"],
            row["val_loss"],
            row["val_accuracy"],
            row["val_roc_auc"],
            row["train_patches_per_s"],
            "  *best" if improved else "",
        )
        if self.write:
            write_history(self.run_dir, self.history)
        for hook in self.hooks:
            hook(epoch, row)
