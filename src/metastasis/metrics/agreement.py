"""Agreement between a prediction and the truth beyond a binary score (pure compute, numpy only):
confusion tables over ordered categories, quadratic weighted kappa (CAMELYON17's measure of pN
staging), and the overlap of two masks (Dice, IoU).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

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
    table = np.zeros((len(labels), len(labels)), np.int64)
    for t, p in zip(truth, predicted):
        table[index[t], index[p]] += 1
    return table


def quadratic_weighted_kappa(
    truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str] = PN_STAGES
) -> float:
    """Cohen's kappa with quadratic weights ``(i - j)^2 / (k - 1)^2`` over the ordered
    ``labels`` (k of them): 1 for perfect agreement, 0 for chance. NaN when the expected
    disagreement is 0 (every case in one category, truth and prediction alike)."""
    k = len(labels)
    if k < 2:
        raise ValueError("kappa needs at least two categories")
    observed = confusion_table(truth, predicted, labels).astype(np.float64)
    n = observed.sum()
    if n == 0:
        return float("nan")
    i, j = np.indices((k, k))
    weights = (i - j) ** 2 / (k - 1) ** 2
    expected = np.outer(observed.sum(1), observed.sum(0)) / n
    denominator = (weights * expected).sum()
    if denominator == 0:
        return float("nan")
    return float(1.0 - (weights * observed).sum() / denominator)


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
