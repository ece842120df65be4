"""Tests for metastasis.metrics.thresholds: hand-worked Youden and sensitivity thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from metastasis.errors import MetastasisError
from metastasis.metrics.classification import binary_metrics
from metastasis.metrics.thresholds import (
    cross_fitted_operating_point,
    parse_threshold_method,
    screening_threshold,
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


# ----------------------------------------------------------------- thresholds that transfer
def test_screening_threshold_hand_worked() -> None:
    # 100 tumour patches with distinct probabilities 0.01..1.00 and 100 normal ones below them:
    # k of 100 at or above a threshold; the 95% one-sided Clopper-Pearson lower bound of k/100
    # first reaches 0.9 at k = 96 (0.9108; scipy.stats.binomtest agrees), the 96th highest: 0.05.
    from scipy.stats import binomtest

    pos = np.arange(1, 101) / 100
    y = np.r_[np.ones(100), np.zeros(100)]
    p = np.r_[pos, np.zeros(100)]
    t = screening_threshold(y, p, 0.9)
    k = int((pos >= t).sum())
    bound = binomtest(k, 100).proportion_ci(0.90, method="exact").low  # one-sided 95%
    assert bound >= 0.9
    below = binomtest(k - 1, 100).proportion_ci(0.90, method="exact").low
    assert below < 0.9
    assert (k, t) == (96, 0.05)
    assert select_threshold(y, p, "screening:0.9") == (0.05, "screening:0.9")
    # the plain method sits on the edge: 90 of 100
    assert select_threshold(y, p, "sensitivity:0.9")[0] == pytest.approx(0.11)


def test_screening_threshold_needs_enough_tumour_patches() -> None:
    with pytest.raises(MetastasisError, match=r"20 tumour patches .* \(at least 59 are needed\)"):
        select_threshold([1] * 20 + [0] * 5, [0.9] * 20 + [0.1] * 5, "screening:0.95")


def test_bagged_youden_is_a_data_value_near_youden() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 600)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0, 1).round(3)
    t, method = select_threshold(y, p, "Bagged: Youden")
    assert method == "bagged:youden"
    assert t in set(p.tolist())
    assert abs(t - youden_threshold(y, p)) < 0.1
    assert select_threshold(y, p, "bagged:youden") == (t, method)  # seeded: repeatable


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("bagged:fixed:0.5", "unknown threshold method"),
        ("bagged:", "unknown threshold method"),
        ("screening:1", "below 1"),
        ("screening", "unknown threshold method"),
    ],
)
def test_new_method_errors(method: str, message: str) -> None:
    with pytest.raises(MetastasisError, match=message):
        parse_threshold_method(method)


def test_cross_fitting_measures_the_optimism_of_an_edge_threshold() -> None:
    # Scores drawn from two overlapping normals: `sensitivity:0.95` meets 0.95 exactly where it
    # was chosen and falls short on held-out folds; `screening:0.95` keeps it there.
    rng = np.random.default_rng(7)
    y = np.r_[np.ones(1500, dtype=int), np.zeros(1500, dtype=int)]
    p = 1 / (1 + np.exp(-np.r_[rng.normal(1.5, 1, 1500), rng.normal(-1.5, 1, 1500)]))
    edge = cross_fitted_operating_point(y, p, "sensitivity:0.95", folds=5, seed=0)
    assert edge["sensitivity"] >= 0.95
    assert edge["cross_fitted_sensitivity"] < edge["sensitivity"]
    assert len(edge["fold_thresholds"]) == 5
    assert edge["optimism"]["sensitivity"] == pytest.approx(
        edge["sensitivity"] - edge["cross_fitted_sensitivity"]
    )
    safe = cross_fitted_operating_point(y, p, "screening:0.95", folds=5, seed=0)
    assert safe["cross_fitted_sensitivity"] >= 0.95
    assert safe["threshold"] < edge["threshold"]
