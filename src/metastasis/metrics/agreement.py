"""Agreement between a prediction and the truth beyond a binary score (pure compute):
confusion tables over ordered categories and quadratic weighted kappa (CAMELYON17's measure of
pN staging), scikit-learn's with the labels checked first, and the overlap of two masks (Dice,
IoU).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sklearn.metrics import cohen_kappa_score, confusion_matrix

__all__ = ["PN_STAGES", "confusion_table", "dice_iou", "quadratic_weighted_kappa"]

# CAMELYON17's five stages, in order (pN3 needs 10 nodes: out of its scope)
PN_STAGES = ("pN0", "pN0(i+)", "pN1mi", "pN1", "pN2")


def confusion_table(
    truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]
) -> np.ndarray:
    """Counts: row = true label, column = predicted label, in the order of ``labels``."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} true labels but {len(predicted)} predicted")
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({str(v) for v in [*truth, *predicted] if v not in index})
    if unknown:
        raise ValueError(f"labels {unknown} are not among {list(labels)}")
    if not len(truth):
        return np.zeros((len(labels), len(labels)), np.int64)
    return confusion_matrix(list(truth), list(predicted), labels=list(labels)).astype(np.int64)


def quadratic_weighted_kappa(
    truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str] = PN_STAGES
) -> float:
    """Cohen's kappa with quadratic weights ``(i - j)^2 / (k - 1)^2`` over the ordered
    ``labels`` (k of them): 1 for perfect agreement, 0 for chance. NaN when the expected
    disagreement is 0 (every case in one category, truth and prediction alike)."""
    k = len(labels)
    if k < 2:
        raise ValueError("kappa needs at least two categories")
    if confusion_table(truth, predicted, labels).sum() == 0:  # checks the labels too
        return float("nan")
    with warnings.catch_warnings():  # undefined (one category only): NaN, as documented
        warnings.simplefilter("ignore")
        kappa = cohen_kappa_score(list(truth), list(predicted), labels=list(labels),
                                  weights="quadratic")  # fmt: skip
    return float(kappa)


def dice_iou(
    predicted: npt.ArrayLike, truth: npt.ArrayLike, within: npt.ArrayLike | None = None
) -> tuple[float, float, dict[str, int]]:
    """Dice and IoU of two boolean masks (only where ``within`` is True), with the counts
    behind them (``intersection``, ``predicted``, ``truth``, ``union``, ``pixels``). Both are
    NaN when neither mask has a pixel there (nothing to overlap)."""
    pred = np.asarray(predicted, bool)
    true = np.asarray(truth, bool)
    if pred.shape != true.shape:
        raise ValueError(f"masks differ in shape: {pred.shape} and {true.shape}")
    if within is not None:
        keep = np.asarray(within, bool)
        if keep.shape != pred.shape:
            raise ValueError(f"within has shape {keep.shape}, the masks {pred.shape}")
        pred, true = pred[keep], true[keep]
    inter = int(np.count_nonzero(pred & true))
    n_pred, n_true = int(np.count_nonzero(pred)), int(np.count_nonzero(true))
    union = n_pred + n_true - inter
    counts = {"intersection": inter, "predicted": n_pred, "truth": n_true, "union": union,
              "pixels": int(pred.size)}  # fmt: skip
    if union == 0:
        return float("nan"), float("nan"), counts
    return 2.0 * inter / (n_pred + n_true), inter / union, counts
