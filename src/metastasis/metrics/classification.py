"""Binary classification metrics: pure functions on numpy arrays, no plotting, no I/O.

Label 1 is the positive class (tumour). Every value returned by :func:`binary_metrics` is a plain
Python value (``int``, ``float``, ``list`` or ``None``), so the dict can go straight into JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

__all__ = ["binary_metrics", "check_binary_inputs", "pr_points", "roc_points"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def check_binary_inputs(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike
) -> tuple[IntArray, FloatArray]:
    """Check labels are in {0, 1} and probabilities in [0, 1]; return 1-D int and float arrays."""
    y = np.asarray(y_true)
    try:
        p = np.asarray(y_prob, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"y_prob must be numeric: {err}") from None
    if y.ndim != 1 or p.ndim != 1:
        raise ValueError(f"y_true and y_prob must be 1-D, got shapes {y.shape} and {p.shape}")
    if len(y) != len(p):
        raise ValueError(f"y_true and y_prob differ in length: {len(y)} != {len(p)}")
    if len(y) == 0:
        raise ValueError("y_true and y_prob are empty")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"y_true must hold numeric 0/1 labels, got dtype {y.dtype}")
    bad = np.unique(y[~np.isin(y, (0, 1))])
    if bad.size:
        raise ValueError(f"y_true must contain only 0 and 1, found {bad[:5].tolist()}")
    if np.isnan(p).any():
        raise ValueError(f"y_prob contains {int(np.isnan(p).sum())} NaN value(s)")
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(f"y_prob must lie in [0, 1], found range [{p.min():g}, {p.max():g}]")
    return y.astype(np.int64), p


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def binary_metrics(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, threshold: float = 0.5
) -> dict[str, Any]:
    """Threshold and ranking metrics for tumour probabilities; positive means ``p >= threshold``.

    Metrics that are undefined for the data (AUCs with one class, ratios over an empty cell) are
    ``None`` rather than NaN, and no warning is emitted.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    y, p = check_binary_inputs(y_true, y_prob)
    pred = (p >= threshold).astype(np.int64)
    (tn, fp), (fn, tp) = confusion_matrix(y, pred, labels=[0, 1]).tolist()
    n_pos = int(y.sum())
    both_classes = 0 < n_pos < len(y)

    sensitivity = _ratio(tp, tp + fn)
    specificity = _ratio(tn, tn + fp)
    balanced = (
        (sensitivity + specificity) / 2
        if sensitivity is not None and specificity is not None
        else None
    )
    return {
        "n": len(y),
        "n_positive": n_pos,
        "prevalence": n_pos / len(y),
        "threshold": float(threshold),
        "accuracy": (tp + tn) / len(y),
        "roc_auc": float(roc_auc_score(y, p)) if both_classes else None,
        "pr_auc": float(average_precision_score(y, p)) if both_classes else None,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "precision": _ratio(tp, tp + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "balanced_accuracy": balanced,
        "brier": float(brier_score_loss(y, p, pos_label=1)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "confusion_matrix": [[int(tn), int(fp)], [int(fn), int(tp)]],
    }


def _require_both_classes(y: IntArray, what: str) -> None:
    if not 0 < y.sum() < len(y):
        raise ValueError(f"{what} is undefined when y_true holds only one class")


def roc_points(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return ``(fpr, tpr, thresholds)`` of the ROC curve; both classes must be present."""
    y, p = check_binary_inputs(y_true, y_prob)
    _require_both_classes(y, "ROC curve")
    fpr, tpr, thresholds = roc_curve(y, p)
    return fpr, tpr, thresholds


def pr_points(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return ``(precision, recall, thresholds)`` of the PR curve; both classes must be present."""
    y, p = check_binary_inputs(y_true, y_prob)
    _require_both_classes(y, "precision-recall curve")
    precision, recall, thresholds = precision_recall_curve(y, p)
    return precision, recall, thresholds
