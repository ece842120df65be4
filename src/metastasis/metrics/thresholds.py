"""Choosing a decision threshold from labelled probabilities (pure compute, no I/O).

As in :func:`metastasis.metrics.classification.binary_metrics`, a patch is predicted positive
(tumour) when ``probability >= threshold``; the thresholds returned here are probabilities seen in
the data, so applying them with ``>=`` reproduces exactly the operating point that was chosen.

Method strings (``select_threshold``, e.g. for a ``--threshold-method`` option):

* ``"0.5"`` or ``"fixed:0.5"``: a fixed threshold in [0, 1];
* ``"youden"``: maximise Youden's J = sensitivity + specificity - 1;
* ``"sensitivity:0.95"``: the largest threshold whose sensitivity is at least 0.95 on these data;
* ``"screening:0.95"``: the largest threshold at which the sensitivity is at least 0.95 *with 95%
  confidence* (the one-sided Clopper-Pearson lower bound over the tumour patches): a screening
  threshold that keeps its promise on new patches instead of meeting it only on the patches it was
  chosen on, where ``sensitivity:0.95`` sits exactly on the edge and falls below it about half the
  time elsewhere;
* ``"bagged:M"`` for any data-driven method ``M`` above (``bagged:youden``): the median of the
  thresholds ``M`` chooses on bootstrap resamples of the data (seeded), which is less tied to the
  particular patches than ``M`` itself (Youden's J is flat near its maximum, so its arg-max jumps).

How a method transfers is measured by :func:`cross_fitted_operating_point`: the threshold chosen on
k - 1 folds is applied to the held-out fold, and the pooled held-out sensitivity and specificity
are compared with the in-sample ones; the difference is the optimism of choosing and measuring on
the same patches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import beta
from sklearn.metrics import roc_curve

from metastasis.errors import MetastasisError
from metastasis.metrics.classification import check_binary_inputs

__all__ = [
    "cross_fitted_operating_point",
    "parse_threshold_method",
    "screening_threshold",
    "select_threshold",
    "threshold_for_sensitivity",
    "youden_threshold",
]

FloatArray = npt.NDArray[np.float64]

METHODS_HELP = (
    "a number in [0, 1], 'fixed:T', 'youden', 'sensitivity:S', 'screening:S' with S in (0, 1), "
    "or 'bagged:' before any but a fixed one"
)
CONFIDENCE = 0.95  # of the screening threshold's sensitivity bound
BAGGING_RESAMPLES = 200
BAGGING_SEED = 0


def _roc(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """ROC points at every distinct probability, without roc_curve's leading ``inf`` threshold
    (``tpr = fpr = 0``, predicting no positives: never a better Youden point than the others)."""
    y, p = check_binary_inputs(y_true, y_prob)
    if not 0 < y.sum() < len(y):
        raise ValueError("choosing a threshold needs both classes in y_true")
    fpr, tpr, thresholds = roc_curve(y, p, drop_intermediate=False)
    keep = np.isfinite(thresholds) & (thresholds <= 1.0)
    return fpr[keep], tpr[keep], thresholds[keep]


def youden_threshold(y_true: npt.ArrayLike, y_prob: npt.ArrayLike) -> float:
    """Threshold maximising sensitivity + specificity - 1; ties go to the highest threshold."""
    fpr, tpr, thresholds = _roc(y_true, y_prob)
    return float(thresholds[int(np.argmax(tpr - fpr))])


def threshold_for_sensitivity(y_true: npt.ArrayLike, y_prob: npt.ArrayLike, target: float) -> float:
    """Largest threshold whose sensitivity (on these data) is at least ``target`` in (0, 1]."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must lie in (0, 1], got {target}")
    _, tpr, thresholds = _roc(y_true, y_prob)
    # tpr rises as the threshold falls and reaches 1 at the lowest probability, so one qualifies.
    return float(thresholds[int(np.argmax(tpr >= target))])


def screening_threshold(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, target: float, confidence: float = CONFIDENCE
) -> float:
    """Largest threshold whose sensitivity is at least ``target`` with ``confidence``: the one-sided
    Clopper-Pearson lower bound of k / n (k tumour patches at or above it, of n) reaches ``target``.

    Raises ValueError when even all n tumour patches cannot give that bound (too few of them:
    n >= log(1 - confidence) / log(target) are needed, 59 for 0.95 at 95%)."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target sensitivity must lie in (0, 1), got {target}")
    y, p = check_binary_inputs(y_true, y_prob)
    if not 0 < y.sum() < len(y):
        raise ValueError("choosing a threshold needs both classes in y_true")
    positives = np.sort(p[y == 1])[::-1]
    n = len(positives)
    k = np.arange(1, n + 1)
    lower = beta.ppf(1.0 - confidence, k, n - k + 1)
    ok = np.flatnonzero(lower >= target)
    if not ok.size:
        need = int(np.ceil(np.log(1.0 - confidence) / np.log(target)))
        raise ValueError(
            f"{n} tumour patches cannot show a sensitivity of {target:g} with "
            f"{confidence:.0%} confidence (at least {need} are needed)"
        )
    # k tumour patches at or above positives[k - 1]; ties only add more, so the bound holds.
    return float(positives[ok[0]])


def _parse_fraction(text: str, method: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MetastasisError(
            f"bad threshold method {method!r}: {text!r} is not a number; use {METHODS_HELP}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise MetastasisError(f"bad threshold method {method!r}: {value:g} is outside [0, 1]")
    return value


def parse_threshold_method(method: str) -> tuple[str, float | None, bool]:
    """``(name, argument, bagged)`` of a method string, or a one-line :class:`MetastasisError`;
    looks at no data (a configuration is checked with it before training)."""
    spec = str(method).strip().lower()
    bagged = spec.startswith("bagged:")
    if bagged:
        spec = spec[len("bagged:") :].strip()
    name, sep, arg = spec.partition(":")
    name, arg = name.strip(), arg.strip()
    if not sep and name not in ("youden", "fixed", "sensitivity", "screening") and name:
        try:
            float(name)
            name, arg, sep = "fixed", name, ":"  # a bare number
        except ValueError:
            pass
    if name == "fixed" and not bagged:
        return "fixed", _parse_fraction(arg, method), False
    if name == "youden" and not sep:
        return "youden", None, bagged
    if name in ("sensitivity", "screening") and sep:
        target = _parse_fraction(arg, method)
        if target == 0.0:
            raise MetastasisError(f"bad threshold method {method!r}: target must be above 0")
        if name == "screening" and target == 1.0:
            raise MetastasisError(f"bad threshold method {method!r}: target must be below 1")
        return name, target, bagged
    raise MetastasisError(f"unknown threshold method {method!r}; use {METHODS_HELP}")


def _canonical(name: str, arg: float | None, bagged: bool) -> str:
    text = name if arg is None else f"{name}:{arg:g}"
    return f"bagged:{text}" if bagged else text


def _choose(y: Any, p: Any, name: str, arg: float | None) -> float:
    if name == "youden":
        return youden_threshold(y, p)
    if name == "sensitivity":
        return threshold_for_sensitivity(y, p, float(arg or 0.0))
    return screening_threshold(y, p, float(arg or 0.0))


def _bagged(y: Any, p: Any, name: str, arg: float | None) -> float:
    """Median of the thresholds chosen on stratified bootstrap resamples (seeded)."""
    yy, pp = check_binary_inputs(y, p)
    rng = np.random.default_rng(BAGGING_SEED)
    groups = [np.flatnonzero(yy == c) for c in (0, 1)]
    if not all(g.size for g in groups):
        raise ValueError("choosing a threshold needs both classes in y_true")
    chosen = []
    for _ in range(BAGGING_RESAMPLES):
        rows = np.concatenate([rng.choice(g, size=g.size, replace=True) for g in groups])
        chosen.append(_choose(yy[rows], pp[rows], name, arg))
    # The median of thresholds that are all data values; the lower one of a middle pair, so that
    # the result is itself a probability seen in the data (as every method here returns).
    return float(np.sort(chosen)[(len(chosen) - 1) // 2])


def select_threshold(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, method: str
) -> tuple[float, str]:
    """Threshold chosen by ``method`` (see the module docstring) and the method in canonical form
    (``"fixed:0.5"``, ``"youden"``, ``"sensitivity:0.95"``, ``"bagged:youden"``), for recording.

    A fixed threshold ignores the data. Raises :class:`MetastasisError` with a one-line message for
    an unknown or malformed method, or when the data cannot support it (e.g. one class only).
    """
    name, arg, bagged = parse_threshold_method(method)
    canonical = _canonical(name, arg, bagged)
    if name == "fixed":
        return float(arg or 0.0), canonical
    try:
        if bagged:
            return _bagged(y_true, y_prob, name, arg), canonical
        return _choose(y_true, y_prob, name, arg), canonical
    except ValueError as err:
        raise MetastasisError(f"threshold method {canonical!r}: {err}") from None


def _rates(y: Any, p: Any, threshold: float) -> tuple[float, float]:
    predicted = p >= threshold
    return float(predicted[y == 1].mean()), float(1.0 - predicted[y == 0].mean())


def cross_fitted_operating_point(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, method: str, folds: int = 5, seed: int = 0
) -> dict[str, Any]:
    """How the threshold ``method`` transfers to patches it was not chosen on.

    The patches are split into ``folds`` stratified folds (seeded); for each, the threshold is
    chosen on the others and applied to it. Returns the in-sample threshold, sensitivity and
    specificity (chosen and measured on all patches), the cross-fitted ones (every patch judged by
    a threshold chosen without it, pooled), the per-fold thresholds, and ``optimism``: in-sample
    minus cross-fitted sensitivity and specificity.
    """
    y, p = check_binary_inputs(y_true, y_prob)
    threshold, canonical = select_threshold(y, p, method)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for c in (0, 1):
        rows = rng.permutation(np.flatnonzero(y == c))
        fold[rows] = np.arange(rows.size) % folds
    predicted = np.zeros(len(y), dtype=bool)
    thresholds = []
    for k in range(folds):
        held = fold == k
        t, _ = select_threshold(y[~held], p[~held], canonical)
        thresholds.append(t)
        predicted[held] = p[held] >= t
    sens_in, spec_in = _rates(y, p, threshold)
    sens_cf = float(predicted[y == 1].mean())
    spec_cf = float(1.0 - predicted[y == 0].mean())
    return {
        "method": canonical,
        "protocol": f"{folds}-fold stratified cross-fitting (seed {seed}) on these patches",
        "threshold": threshold,
        "sensitivity": sens_in,
        "specificity": spec_in,
        "cross_fitted_sensitivity": sens_cf,
        "cross_fitted_specificity": spec_cf,
        "fold_thresholds": thresholds,
        "optimism": {"sensitivity": sens_in - sens_cf, "specificity": spec_in - spec_cf},
    }
