"""Tests for metastasis.metrics.thresholds: hand-worked Youden and sensitivity thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from metastasis.errors import MetastasisError
from metastasis.metrics.classification import binary_metrics
from metastasis.metrics.thresholds import (
    select_threshold,
    threshold_for_sensitivity,
    youden_threshold,
)

Y = [0, 0, 1, 1, 0, 1]
P = [0.1, 0.4, 0.35, 0.8, 0.5, 0.7]
# t:    0.8   0.7   0.5   0.4   0.35  0.1
# sens: 1/3   2/3   2/3   2/3   1     1
# spec: 1     1     2/3   1/3   1/3   0
# J:    1/3   2/3   1/3   0     1/3   0


def test_youden_hand_worked() -> None:
    t = youden_threshold(Y, P)
    assert t == 0.7
    m = binary_metrics(Y, P, threshold=t)  # same ">=" rule as the metrics
    assert (m["sensitivity"], m["specificity"]) == (pytest.approx(2 / 3), 1.0)


def test_youden_ties_go_to_the_highest_threshold() -> None:
    # 0.8 and 0.35 both give J = 0.5
    assert youden_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.8


def test_youden_is_finite_for_a_useless_classifier() -> None:
    t = youden_threshold([1, 0, 1, 0], [0.2, 0.4, 0.6, 0.8])
    assert 0.0 <= t <= 1.0


def test_youden_maximises_j_on_random_data() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1).round(2)
    t = youden_threshold(y, p)

    def j(th: float) -> float:
        m = binary_metrics(y, p, th)
        return float(m["sensitivity"] + m["specificity"] - 1)

    assert j(t) == pytest.approx(max(j(float(c)) for c in np.unique(p)))


@pytest.mark.parametrize(
    ("target", "expected"), [(1.0, 0.35), (0.95, 0.35), (0.6, 0.7), (2 / 3, 0.7), (0.3, 0.8)]
)
def test_threshold_for_sensitivity_hand_worked(target: float, expected: float) -> None:
    assert threshold_for_sensitivity(Y, P, target) == expected


def test_threshold_for_sensitivity_is_the_largest_reaching_the_target() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    p = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)
    for target in (0.5, 0.9, 0.95, 0.99):
        t = threshold_for_sensitivity(y, p, target)
        assert binary_metrics(y, p, t)["sensitivity"] >= target
        higher = p[p > t]
        above = higher.min() if higher.size else None
        if above is not None:
            assert binary_metrics(y, p, float(above))["sensitivity"] < target


def test_threshold_functions_need_both_classes_and_a_valid_target() -> None:
    with pytest.raises(ValueError, match="both classes"):
        youden_threshold([1, 1], [0.2, 0.9])
    with pytest.raises(ValueError, match="target"):
        threshold_for_sensitivity(Y, P, 0.0)


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("0.3", (0.3, "fixed:0.3")),
        ("fixed:0.25", (0.25, "fixed:0.25")),
        (" Fixed : 1 ", (1.0, "fixed:1")),
        ("youden", (0.7, "youden")),
        ("YOUDEN", (0.7, "youden")),
        ("sensitivity:0.95", (0.35, "sensitivity:0.95")),
        ("sensitivity:0.6", (0.7, "sensitivity:0.6")),
    ],
)
def test_select_threshold(method: str, expected: tuple[float, str]) -> None:
    assert select_threshold(Y, P, method) == expected


def test_fixed_threshold_ignores_the_data() -> None:
    assert select_threshold([], [], "0.5") == (0.5, "fixed:0.5")


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("f1", "unknown threshold method 'f1'"),
        ("youden:0.3", "unknown threshold method"),
        ("sensitivity", "unknown threshold method"),
        ("fixed:abc", "'abc' is not a number"),
        ("1.5", "1.5 is outside"),
        ("sensitivity:-0.1", "outside"),
        ("sensitivity:0", "above 0"),
        ("", "unknown threshold method ''"),
        ("fixed", "'' is not a number"),
    ],
)
def test_select_threshold_errors(method: str, message: str) -> None:
    with pytest.raises(MetastasisError, match=message) as info:
        select_threshold(Y, P, method)
    assert "\n" not in str(info.value)


def test_select_threshold_reports_data_problems_as_metastasis_errors() -> None:
    with pytest.raises(MetastasisError, match=r"youden.*both classes"):
        select_threshold([1, 1, 1], [0.2, 0.5, 0.9], "youden")
    with pytest.raises(MetastasisError, match=r"sensitivity:0\.9.*differ in length"):
        select_threshold([0, 1], [0.2], "sensitivity:0.9")
