"""The figures and the page of a training run folder, drawn from what ``fit`` returned.

``metastasis.fit`` writes a run's data (config, splits, ``history.csv``, ``metrics.json``,
``val_predictions.csv``, checkpoint, exports); this adds ``history.png``, ``roc.png``,
``pr.png``, ``confusion_matrix.png``, ``reliability.png``, ``augmentations.png`` and
``report.html``. ``metastasis.train`` calls it after ``fit``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from metastasis.config import TrainConfig
from metastasis.data.synthetic import SYNTHETIC_WARNING, is_synthetic
from metastasis.metrics.plots import plot_history
from metastasis.reports.augment_preview import write_augmentation_preview
from metastasis.reports.evaluation import write_evaluation_plots, write_html_report
from metastasis.reports.figures import save_figure
from metastasis.transforms.augment import Augmenter, augment_spec

if TYPE_CHECKING:  # what `engine.trainer.fit` returned; only `metastasis.training` calls this
    from metastasis.engine.data import TrainingData
    from metastasis.engine.trainer import RunResult

__all__ = ["FIGURES", "write_run_report"]

FIGURES = (
    "history.png",
    "roc.png",
    "pr.png",
    "confusion_matrix.png",
    "reliability.png",
    "augmentations.png",
)


def write_run_report(result: RunResult, cfg: TrainConfig) -> Path:
    """Write the run's figures and ``report.html`` into ``result.run_dir``; the page's path.

    ``cfg`` is the run's config (the augmentation preview draws its augmentation)."""
    if result.val is None or result.data is None:
        raise ValueError("write_run_report needs the result of a finished fit (rank 0)")
    run_dir, history, metrics = result.run_dir, result.history, result.metrics
    metrics_val, calibration = metrics["val"], metrics["checkpoint"]
    write_evaluation_plots(run_dir, result.val.labels, result.val.probs, metrics_val)
    save_figure(plot_history(history), run_dir / "history.png")
    augmenter = Augmenter(augment_spec(cfg.augment, cfg.augment_kwargs))
    images, labels = preview_patches(result.data)
    write_augmentation_preview(
        run_dir / "augmentations.png", images, augmenter, seed=cfg.seed, labels=labels
    )
    threshold = float(calibration["threshold"])
    return write_html_report(
        run_dir / "report.html",
        f"metastasis run: {cfg.model}",
        metrics_val,
        list(FIGURES),
        extra_tables={"History": history},
        split="val",
        warning=SYNTHETIC_WARNING if cfg.data is not None and is_synthetic(cfg.data) else None,
        notes=[
            f"Best epoch {result.best_epoch} of {len(history)} by validation ROC-AUC.",
            f"Threshold {threshold:.4f} ({calibration['threshold_method']}); "
            f"test-time augmentation: {calibration.get('tta', 'none')}; "
            f"temperature {calibration.get('temperature', 1.0):.3f}.",
            f"Training data: {cfg.data}; validation: {cfg.val_data or 'split of training data'}.",
            *_transfer_note(calibration.get("threshold_transfer")),
        ],
    )


def _transfer_note(transfer: dict[str, Any] | None) -> list[str]:
    """How the chosen threshold holds on validation patches it was not chosen on (or nothing)."""
    if not transfer:
        return []
    return [
        f"Threshold transfer ({transfer['protocol']}): sensitivity "
        f"{transfer['cross_fitted_sensitivity']:.3f}, specificity "
        f"{transfer['cross_fitted_specificity']:.3f} on held-out folds, against "
        f"{transfer['sensitivity']:.3f} and {transfer['specificity']:.3f} where it was chosen."
    ]


def preview_patches(data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
    """3 training patches of each class (the first ones, in row order), normal ones first:
    uint8 NHWC images and their labels."""
    labels = data.train_labels
    picked = [np.sort(data.train_idx[labels == c][:3]) for c in (0, 1)]
    rows = np.concatenate(picked)
    classes = np.concatenate([np.full(len(p), c, dtype=np.int64) for c, p in zip((0, 1), picked)])
    return np.asarray(data.train.images[rows]), classes
