"""Choosing a decision threshold from labelled probabilities (pure compute, no I/O).

As in :func:`metastasis.metrics.classification.binary_metrics`, a patch is predicted positive
(tumour) when ``probability >= threshold``; the thresholds returned here are probabilities seen in
the data, so applying them with ``>=`` reproduces exactly the operating point that was chosen.

Method strings (``select_threshold``, e.g. for a ``--threshold-method`` option):

* ``"0.5"`` or ``"fixed:0.5"``: a fixed threshold in [0, 1];
* ``"youden"``: maximise Youden's J = sensitivity + specificity - 1;
* ``"sensitivity:0.95"``: the largest threshold whose sensitivity is at least 0.95 (screening).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_curve

from metastasis.errors import MetastasisError
from metastasis.metrics.classification import check_binary_inputs

__all__ = ["select_threshold", "threshold_for_sensitivity", "youden_threshold"]

FloatArray = npt.NDArray[np.float64]

METHODS_HELP = "a number in [0, 1], 'fixed:T', 'youden' or 'sensitivity:S' with S in (0, 1]"


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


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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


def select_threshold(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, method: str
) -> tuple[float, str]:
    """Threshold chosen by ``method`` (see the module docstring) and the method in canonical form
    (``"fixed:0.5"``, ``"youden"``, ``"sensitivity:0.95"``), for recording beside it.

    A fixed threshold ignores the data. Raises :class:`MetastasisError` with a one-line message for
    an unknown or malformed method, or when the data cannot support it (e.g. one class only).
    """
    spec = str(method).strip().lower()
    name, sep, arg = spec.partition(":")
    name, arg = name.strip(), arg.strip()
    if not sep and name not in ("youden", "fixed", "sensitivity") and _is_number(name):
        name, arg = "fixed", name  # a bare number
    if name == "fixed":
        value = _parse_fraction(arg, method)
        return value, f"fixed:{value:g}"
    if name == "youden" and not sep:
        try:
            return youden_threshold(y_true, y_prob), "youden"
        except ValueError as err:
            raise MetastasisError(f"threshold method 'youden': {err}") from None
    if name == "sensitivity" and sep:
        target = _parse_fraction(arg, method)
        if target == 0.0:
            raise MetastasisError(f"bad threshold method {method!r}: target must be above 0")
        try:
            return threshold_for_sensitivity(y_true, y_prob, target), f"sensitivity:{target:g}"
        except ValueError as err:
            raise MetastasisError(f"threshold method {method!r}: {err}") from None
    raise MetastasisError(f"unknown threshold method {method!r}; use {METHODS_HELP}")
