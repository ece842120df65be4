"""Percentile-bootstrap confidence intervals for patch-level metrics (pure compute, numpy only).

Patches are resampled with replacement. All resamples are scored at once: each resample is
reduced to counts of positives and negatives per distinct probability, from which ROC-AUC
(Mann-Whitney, ties counted one half, equal to ``sklearn.metrics.roc_auc_score``), accuracy,
sensitivity and specificity follow by array arithmetic. Resamples are processed in chunks so
memory stays bounded for large sets.

Patches from one slide are not independent, so a patch-level interval is optimistic when many
patches share a slide; it is what the data here allow (PCam has no slide ids per patch).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from metastasis.metrics.classification import check_binary_inputs

__all__ = ["BOOTSTRAP_METRICS", "bootstrap_ci", "resampled_roc_auc"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BOOTSTRAP_METRICS = ("roc_auc", "accuracy", "sensitivity", "specificity")
_CHUNK_ELEMENTS = 4_000_000  # resampled indices held at once (int64: 32 MB)


def _class_counts(key: IntArray, n_keys: int, indices: IntArray) -> tuple[FloatArray, FloatArray]:
    """Per resample (row of ``indices``), counts of negatives and positives per distinct score:
    ``key = 2 * score_rank + label``. Returns two ``(n_resamples, n_keys // 2)`` arrays."""
    rows = indices.shape[0]
    flat = (np.arange(rows, dtype=np.int64)[:, None] * n_keys + key[indices]).ravel()
    counts = np.bincount(flat, minlength=rows * n_keys).astype(np.float64)
    counts = counts.reshape(rows, n_keys // 2, 2)
    return counts[:, :, 0], counts[:, :, 1]


def _auc_from_counts(neg: FloatArray, pos: FloatArray) -> FloatArray:
    """ROC-AUC per row from counts per distinct score in ascending order; NaN without a class."""
    below = np.cumsum(neg, axis=1) - neg  # negatives strictly below each score
    wins = np.sum(pos * (below + 0.5 * neg), axis=1)
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def _score_keys(y: IntArray, p: FloatArray) -> tuple[IntArray, FloatArray]:
    """``2 * rank of p among the distinct scores + label`` per patch, and the distinct scores."""
    scores, rank = np.unique(p, return_inverse=True)
    return (2 * rank.reshape(-1) + y).astype(np.int64), scores


def resampled_roc_auc(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, indices: npt.ArrayLike
) -> FloatArray:
    """ROC-AUC of each resample ``(y_true[row], y_prob[row])`` for the rows of the 2-D integer
    array ``indices``; NaN for a resample that lacks a class."""
    y, p = check_binary_inputs(y_true, y_prob)
    idx = np.asarray(indices, dtype=np.int64)
    if idx.ndim != 2:
        raise ValueError(f"indices must be 2-D (resamples, patches), got shape {idx.shape}")
    key, scores = _score_keys(y, p)
    neg, pos = _class_counts(key, 2 * len(scores), idx)
    return _auc_from_counts(neg, pos)


def _interval(values: FloatArray, confidence: float) -> dict[str, float | int | None]:
    valid = values[np.isfinite(values)]
    skipped = len(values) - len(valid)
    if len(valid) == 0:
        return {"low": None, "high": None, "n_skipped": skipped}
    alpha = (1.0 - confidence) / 2
    low, high = np.percentile(valid, [100 * alpha, 100 * (1 - alpha)])
    return {"low": float(low), "high": float(high), "n_skipped": skipped}


def bootstrap_ci(
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    threshold: float = 0.5,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float | int | None]]:
    """Percentile-bootstrap intervals of ROC-AUC, accuracy, sensitivity and specificity.

    Returns ``{metric: {"low", "high", "n_skipped"}}`` for the metrics in ``BOOTSTRAP_METRICS``,
    predictions being ``p >= threshold``. Resamples without positives (or without negatives) are
    skipped for the metrics undefined on them and counted in ``n_skipped``; ``low``/``high`` are
    ``None`` if every resample was skipped. The same ``seed`` gives the same numbers.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)):
        raise ValueError(f"n_resamples must be an integer, got {n_resamples!r}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    y, p = check_binary_inputs(y_true, y_prob)
    n = len(y)
    key, scores = _score_keys(y, p)
    n_keys = 2 * len(scores)
    predicted_positive = scores >= threshold  # per distinct score, ascending

    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    results: dict[str, list[FloatArray]] = {name: [] for name in BOOTSTRAP_METRICS}
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        neg, pos = _class_counts(key, n_keys, rng.integers(0, n, size=(rows, n)))
        n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
        tp = pos[:, predicted_positive].sum(axis=1)
        tn = neg[:, ~predicted_positive].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            results["sensitivity"].append(np.where(n_pos > 0, tp / n_pos, np.nan))
            results["specificity"].append(np.where(n_neg > 0, tn / n_neg, np.nan))
        results["accuracy"].append((tp + tn) / n)
        results["roc_auc"].append(_auc_from_counts(neg, pos))
    return {name: _interval(np.concatenate(parts), confidence) for name, parts in results.items()}
