"""The run folder's data files: inputs (config, data, splits, exclusions), environment, results.

The engine writes data (YAML, JSON, CSV); figures and ``report.html`` are drawn from them by the
layer above (``metastasis.reports.run``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metastasis.config import TrainConfig, dump_config
from metastasis.data.cache import CachedSplit
from metastasis.data.synthetic import is_synthetic
from metastasis.engine.data import TrainingData
from metastasis.engine.environment import environment
from metastasis.engine.finetune import finetune_summary
from metastasis.inference.batches import EpochOutput
from metastasis.io import atomic_path, atomic_write_json, atomic_write_text
from metastasis.metrics.evaluation import evaluation_metrics
from metastasis.predictions import labels_frame, predictions_frame, write_table

log = logging.getLogger(__name__)


def data_summary(data: CachedSplit, n_used: int) -> dict[str, Any]:
    return {
        "source": data.meta["source"],
        "synthetic": is_synthetic(data.meta["source"]),
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


def write_run_inputs(run_dir: Path, cfg: TrainConfig, data: TrainingData) -> None:
    """``config.yaml``, ``data.json`` (sources, counts, what ``--exclude`` left out),
    ``splits.csv`` and ``excluded.csv``."""
    train, val, train_idx, val_idx = data.train, data.val, data.train_idx, data.val_idx
    protocol, left_out = data.protocol, data.left_out
    atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    atomic_write_json(
        run_dir / "data.json",
        {
            "validation_protocol": protocol,
            "train": data_summary(train, len(train_idx)),
            "val": data_summary(val, len(val_idx)),
            **({"left_out": left_out.to_dict()} if left_out else {}),
        },
    )
    splits = pd.concat(
        [
            labels_frame(train.ids[train_idx], train.labels[train_idx], split="train"),
            labels_frame(val.ids[val_idx], val.labels[val_idx], split="val"),
        ]
    )
    write_table(splits, run_dir / "splits.csv")
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


def write_results(
    run_dir: Path,
    cfg: TrainConfig,
    val: CachedSplit,
    val_idx: np.ndarray,
    best: EpochOutput,
    best_epoch: int,
    history: list[dict[str, Any]],
    calibration: dict[str, Any] | None = None,
    swa: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluation of the final validation output ``best`` (the best epoch's, or with ``swa``
    the weight average's, after test-time augmentation and temperature scaling where chosen)
    at the checkpoint's threshold: ``metrics.json`` and ``val_predictions.csv``; returns what
    ``metrics.json`` holds."""
    calibration = calibration or {"threshold": cfg.threshold, "threshold_method": "fixed"}
    threshold = float(calibration["threshold"])
    metrics = {
        "val": evaluation_metrics(best.labels, best.probs, threshold),
        "checkpoint": calibration,
        "best_epoch": best_epoch,
        "selected_by": "swa" if swa else "val_roc_auc",
        **({"swa": swa} if swa else {}),
        "epochs": len(history),
        "stopped_early": len(history) < cfg.epochs,
        "train_seconds_total": round(sum(h["train_seconds"] for h in history), 2),
        **finetune_summary(cfg),  # a fine-tuned encoder: how many blocks, at what rate
    }
    atomic_write_json(run_dir / "metrics.json", metrics)
    write_table(
        predictions_frame(val.ids[val_idx], best.probs, threshold, best.labels),
        run_dir / "val_predictions.csv",
    )
    return metrics


def write_environment(
    run_dir: Path, device: Any, workers: int, eval_batch: int, **extra: Any
) -> None:
    """``environment.json``: versions, device, threads, loader workers, batch sizes, ``extra``."""
    atomic_write_json(
        run_dir / "environment.json",
        {**environment(device, workers, eval_batch), **extra},
    )
