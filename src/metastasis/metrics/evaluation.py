"""The full evaluation of one set of predictions: every number a report or ``metrics.json`` shows.

Pure compute on arrays, no plots and no files: :func:`binary_metrics` plus the expected
calibration error and 95% bootstrap intervals. ``reports.evaluation.write_evaluation`` adds the
plots; the trainer writes these numbers into the run folder's ``metrics.json``.
"""

from __future__ import annotations

from typing import Any

import numpy.typing as npt

from metastasis.metrics.bootstrap import bootstrap_ci
from metastasis.metrics.calibration import expected_calibration_error
from metastasis.metrics.classification import binary_metrics

__all__ = ["evaluation_metrics"]


def evaluation_metrics(
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    threshold: float = 0.5,
    *,
    n_bins: int = 15,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`binary_metrics` at ``threshold`` plus ``ece`` (``n_bins`` equal-width bins) and
    ``ci95``: 95% percentile-bootstrap intervals of ROC-AUC, accuracy, sensitivity and
    specificity (:func:`bootstrap_ci`, ``n_resamples`` resamples from ``seed``; ``n_resamples=0``
    leaves ``ci95`` out). Plain Python values only, ready for JSON."""
    metrics = binary_metrics(y_true, y_prob, threshold=threshold)
    metrics["ece"] = expected_calibration_error(y_true, y_prob, n_bins)
    if n_resamples:
        metrics["ci95"] = bootstrap_ci(
            y_true, y_prob, threshold, n_resamples=n_resamples, confidence=0.95, seed=seed
        )
    return metrics
