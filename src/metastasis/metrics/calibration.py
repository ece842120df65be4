"""Calibration of tumour probabilities (pure compute: arrays in, numbers and dicts out).

* :func:`expected_calibration_error`, :func:`brier_score` and :func:`reliability_curve` measure
  how far predicted probabilities are from observed frequencies;
* :func:`fit_temperature` fits temperature scaling (Guo et al. 2017, "On calibration of modern
  neural networks") for a binary sigmoid model, and :func:`apply_temperature` applies it.

Temperature scaling works on logits. Callers that only kept probabilities (prediction CSVs,
``EpochOutput.probs``) turn them back into logits with :func:`logits_from_probs`::

    t = fit_temperature(logits_from_probs(val_probs), val_labels)
    calibrated = apply_temperature(logits_from_probs(test_probs), t)

Equal-width bins throughout: bin ``k`` of ``n_bins`` is ``(k / n_bins, (k + 1) / n_bins]`` and the
first bin also holds probability 0.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit

from metastasis.metrics.classification import check_binary_inputs

__all__ = [
    "apply_temperature",
    "bin_edges",
    "bin_indices",
    "brier_score",
    "expected_calibration_error",
    "fit_temperature",
    "logits_from_probs",
    "reliability_curve",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Temperature search range: log T in [log(1/100), log(100)]; separable data pushes T to the bound.
TEMPERATURE_BOUNDS = (0.01, 100.0)
# logits_from_probs clips probabilities to [eps, 1 - eps] (float32 sigmoid saturates at 1.0).
PROB_EPS = 1e-7


def _check_n_bins(n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")


def bin_edges(n_bins: int = 15) -> FloatArray:
    """The ``n_bins + 1`` edges ``k / n_bins``, each the double nearest the fraction, so that a
    probability written as ``k / n_bins`` falls in bin ``k - 1`` as the definition says."""
    _check_n_bins(n_bins)
    return np.arange(n_bins + 1, dtype=np.float64) / n_bins


def bin_indices(y_prob: npt.ArrayLike, n_bins: int = 15) -> IntArray:
    """Equal-width bin of each probability: ``k`` for ``p`` in ``(k/n_bins, (k+1)/n_bins]``,
    and bin 0 for ``p == 0``."""
    p = np.asarray(y_prob, dtype=np.float64)
    bins = np.searchsorted(bin_edges(n_bins), p, side="left") - 1
    return np.clip(bins, 0, n_bins - 1).astype(np.int64)


def reliability_curve(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, n_bins: int = 15
) -> dict[str, FloatArray | IntArray]:
    """Per-bin statistics of a reliability diagram, all bins kept in order.

    Returns ``bin_edges`` (``n_bins + 1``), and per bin ``count`` (patches), ``mean_predicted``
    (mean probability) and ``observed_fraction`` (fraction of positives). Empty bins have count 0
    and NaN means, so every array lines up with ``bin_edges``; drop them with ``count > 0``.
    """
    y, p = check_binary_inputs(y_true, y_prob)
    bins = bin_indices(p, n_bins)
    count = np.bincount(bins, minlength=n_bins).astype(np.int64)
    prob_sum = np.bincount(bins, weights=p, minlength=n_bins)
    pos_sum = np.bincount(bins, weights=y.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.where(count > 0, prob_sum / count, np.nan)
        observed = np.where(count > 0, pos_sum / count, np.nan)
    return {
        "bin_edges": bin_edges(n_bins),
        "count": count,
        "mean_predicted": mean_predicted,
        "observed_fraction": observed,
    }


def expected_calibration_error(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, n_bins: int = 15
) -> float:
    """ECE of the positive-class probability over equal-width bins:
    ``sum_k |observed_k - mean_predicted_k| * n_k / N`` (empty bins contribute nothing)."""
    curve = reliability_curve(y_true, y_prob, n_bins)
    count = curve["count"]
    filled = count > 0
    gaps = np.abs(curve["observed_fraction"][filled] - curve["mean_predicted"][filled])
    return float(np.sum(gaps * count[filled]) / count.sum())


def brier_score(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> float:
    """Mean squared difference between probability and label (``brier_score_loss``)."""
    y, p = check_binary_inputs(y_true, y_prob)
    return float(np.mean((p - y) ** 2))


def logits_from_probs(y_prob: npt.ArrayLike, eps: float = PROB_EPS) -> FloatArray:
    """Logits ``log(p / (1 - p))`` of probabilities clipped to ``[eps, 1 - eps]`` (finite)."""
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5), got {eps}")
    p = np.asarray(y_prob, dtype=np.float64)
    return np.asarray(logit(np.clip(p, eps, 1.0 - eps)), dtype=np.float64)


def _check_temperature(temperature: float) -> None:
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")


def apply_temperature(logits: npt.ArrayLike, temperature: float) -> FloatArray:
    """Calibrated probabilities ``sigmoid(logits / temperature)`` (logits, not probabilities:
    see :func:`logits_from_probs`)."""
    _check_temperature(temperature)
    z = np.asarray(logits, dtype=np.float64)
    return np.asarray(expit(z / temperature), dtype=np.float64)


def _mean_bce(z: FloatArray, y: FloatArray) -> float:
    """Mean binary cross-entropy of ``sigmoid(z)`` against ``y``, computed stably."""
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits: npt.ArrayLike, y_true: npt.ArrayLike) -> float:
    """Temperature ``T > 0`` minimising the mean BCE of ``sigmoid(logits / T)`` (temperature
    scaling). Deterministic: a bounded scalar search over ``log T`` in ``TEMPERATURE_BOUNDS``.

    Returns 1.0 when there is nothing to fit: no data, one class, or all logits zero.
    """
    z = np.asarray(logits, dtype=np.float64)
    y_raw = np.asarray(y_true)
    if z.ndim != 1 or y_raw.ndim != 1 or len(z) != len(y_raw):
        raise ValueError(
            f"logits and y_true must be 1-D of equal length, got {z.shape} and {y_raw.shape}"
        )
    if len(z) == 0:
        return 1.0
    if not np.isfinite(z).all():
        raise ValueError("logits must be finite (use logits_from_probs on probabilities)")
    y, _ = check_binary_inputs(y_raw, np.zeros(len(z)))
    if not 0 < y.sum() < len(y) or not z.any():
        return 1.0
    yf = y.astype(np.float64)
    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    result = minimize_scalar(
        lambda log_t: _mean_bce(z * math.exp(-log_t), yf),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(math.exp(result.x))
