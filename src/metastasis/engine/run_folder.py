"""The run folder's files: inputs (config, data, splits, exclusions), history and results."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metastasis.config import TrainConfig, dump_config
from metastasis.data.cache import CachedSplit
from metastasis.engine.loop import EpochOutput
from metastasis.io import atomic_path, atomic_write_json, atomic_write_text
from metastasis.metrics.classification import binary_metrics
from metastasis.transforms.augment import Augmenter

log = logging.getLogger(__name__)


def nan_if_none(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def history_row(
    epoch: int, tr: EpochOutput, va: EpochOutput, threshold: float, seconds: float
) -> dict[str, Any]:
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
    }


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    with atomic_path(run_dir / "history.csv") as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


def data_summary(data: CachedSplit, n_used: int) -> dict[str, Any]:
    return {
        "source": data.meta["source"],
        "layout": data.meta["layout"],
        "split": data.meta["split"],
        "fingerprint": data.fingerprint,
        "cache": str(data.path),
        "n_rows": len(data),
        "n_usable": int(data.ok.sum()),
        "n_excluded": int((~data.ok).sum()),
        "n_used": n_used,
        "class_counts": data.class_counts(),
        "findings": [f.to_dict() for f in data.findings()],
    }


def write_run_inputs(
    run_dir: Path,
    cfg: TrainConfig,
    train: CachedSplit,
    val: CachedSplit,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    protocol: str,
) -> None:
    atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    atomic_write_json(
        run_dir / "data.json",
        {
            "validation_protocol": protocol,
            "train": data_summary(train, len(train_idx)),
            "val": data_summary(val, len(val_idx)),
        },
    )
    splits = pd.concat(
        [
            pd.DataFrame(
                {"split": "train", "id": train.ids[train_idx], "label": train.labels[train_idx]}
            ),
            pd.DataFrame({"split": "val", "id": val.ids[val_idx], "label": val.labels[val_idx]}),
        ]
    )
    with atomic_path(run_dir / "splits.csv") as tmp:
        splits.to_csv(tmp, index=False)
    excluded = pd.concat(
        [train.excluded().assign(split="train")]
        + ([val.excluded().assign(split="val")] if val is not train else [])
    )
    with atomic_path(run_dir / "excluded.csv") as tmp:
        excluded.to_csv(tmp, index=False)
    if len(excluded):
        counts = excluded["problem"].value_counts().to_dict()
        log.warning(
            "%d files excluded (%s); listed in %s",
            len(excluded),
            ", ".join(f"{k}: {v}" for k, v in counts.items()),
            run_dir / "excluded.csv",
        )


def write_augmentation_preview(
    run_dir: Path, data: CachedSplit, indices: np.ndarray, augmenter: Augmenter, seed: int
) -> None:
    """``augmentations.png``: 3 patches of each class and 5 augmented views of each."""
    from metastasis.reports.augment_preview import write_augmentation_preview as write

    labels = data.labels[indices]
    picked = [indices[labels == c][:3] for c in (0, 1)]
    rows = np.sort(np.concatenate(picked))
    write(run_dir / "augmentations.png", np.asarray(data.images[rows]), augmenter, seed=seed)


def write_results(
    run_dir: Path,
    cfg: TrainConfig,
    val: CachedSplit,
    val_idx: np.ndarray,
    best: EpochOutput,
    best_epoch: int,
    history: list[dict[str, Any]],
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluation of the final validation output ``best`` (the best epoch's, after test-time
    augmentation and temperature scaling where chosen) at the checkpoint's threshold."""
    from metastasis.metrics.plots import plot_history
    from metastasis.reports.evaluation import write_evaluation, write_html_report
    from metastasis.reports.figures import save_figure

    calibration = calibration or {"threshold": cfg.threshold, "threshold_method": "fixed"}
    threshold = float(calibration["threshold"])
    metrics_val = write_evaluation(run_dir, best.labels, best.probs, threshold)
    save_figure(plot_history(pd.DataFrame(history)), run_dir / "history.png")
    metrics = {
        "val": metrics_val,
        "checkpoint": calibration,
        "best_epoch": best_epoch,
        "selected_by": "val_roc_auc",
        "epochs": len(history),
        "stopped_early": len(history) < cfg.epochs,
        "train_seconds_total": round(sum(h["train_seconds"] for h in history), 2),
    }
    atomic_write_json(run_dir / "metrics.json", metrics)
    with atomic_path(run_dir / "val_predictions.csv") as tmp:
        pd.DataFrame(
            {"id": val.ids[val_idx], "label": best.labels, "probability": best.probs}
        ).to_csv(tmp, index=False, float_format="%.6f")
    write_html_report(
        run_dir / "report.html",
        f"metastasis run: {cfg.model}",
        metrics_val,
        [
            "history.png",
            "roc.png",
            "pr.png",
            "confusion_matrix.png",
            "reliability.png",
            "augmentations.png",
        ],
        extra_tables={"History": pd.DataFrame(history)},
        notes=[
            f"Best epoch {best_epoch} of {len(history)} by validation ROC-AUC.",
            f"Threshold {threshold:.4f} ({calibration['threshold_method']}); "
            f"test-time augmentation: {calibration.get('tta', 'none')}; "
            f"temperature {calibration.get('temperature', 1.0):.3f}.",
            f"Training data: {cfg.data}; validation: {cfg.val_data or 'split of training data'}.",
        ],
    )
    return metrics
