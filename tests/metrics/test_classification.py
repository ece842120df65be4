"""Tests for metastasis.metrics.classification against hand-computed values."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest

from metastasis.metrics.classification import binary_metrics, pr_points, roc_points

Y = [0, 0, 1, 1]
P = [0.1, 0.4, 0.35, 0.8]


def test_binary_metrics_hand_computed() -> None:
    m = binary_metrics(Y, P)
    # prediction at 0.5 -> [0, 0, 0, 1]: tn=2, fp=0, fn=1, tp=1
    assert m["confusion_matrix"] == [[2, 0], [1, 1]]
    assert (m["n"], m["n_positive"], m["prevalence"], m["threshold"]) == (4, 2, 0.5, 0.5)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["roc_auc"] == pytest.approx(0.75)  # 3 of 4 positive/negative pairs ordered
    assert m["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert m["sensitivity"] == pytest.approx(0.5)
    assert m["specificity"] == pytest.approx(1.0)
    assert m["precision"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    assert m["brier"] == pytest.approx((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4)
    expected_ll = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert m["log_loss"] == pytest.approx(expected_ll)


def test_threshold_is_inclusive() -> None:
    m = binary_metrics(Y, P, threshold=0.35)
    # prediction -> [0, 1, 1, 1]: 0.35 >= 0.35 counts as positive
    assert m["confusion_matrix"] == [[1, 1], [0, 2]]
    assert m["sensitivity"] == 1.0
    assert m["specificity"] == 0.5
    assert m["threshold"] == 0.35


def test_values_are_plain_python_and_json_serialisable() -> None:
    m = binary_metrics(np.array(Y, dtype=np.int8), np.array(P, dtype=np.float32))
    json.dumps(m)
    for key, value in m.items():
        assert type(value) in (int, float, list, type(None)), key
    assert all(type(v) is int for row in m["confusion_matrix"] for v in row)


def test_single_class_gives_none_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert m["roc_auc"] is None and m["pr_auc"] is None
    assert m["specificity"] is None and m["balanced_accuracy"] is None
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"] == [[0, 0], [1, 2]]
    assert m["prevalence"] == 1.0


def test_no_predicted_positives_gives_none_precision() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = binary_metrics([0, 1], [0.1, 0.2])
    assert m["precision"] is None
    assert m["f1"] == 0.0
    assert m["sensitivity"] == 0.0


def test_bool_labels_and_extreme_probabilities() -> None:
    m = binary_metrics([False, True], [0.0, 1.0])
    assert m["accuracy"] == 1.0 and m["roc_auc"] == 1.0
    assert math.isfinite(m["log_loss"])


@pytest.mark.parametrize(
    ("y_true", "y_prob", "match"),
    [
        ([0, 1, 1], [0.1, 0.2], "differ in length"),
        ([], [], "empty"),
        ([0, 2], [0.1, 0.2], "only 0 and 1"),
        ([0.0, 0.5], [0.1, 0.2], "only 0 and 1"),
        (["a", "b"], [0.1, 0.2], "numeric 0/1"),
        ([0, 1], [0.1, float("nan")], "NaN"),
        ([0, 1], [-0.1, 0.5], r"\[0, 1\]"),
        ([0, 1], [0.1, 1.5], r"\[0, 1\]"),
        ([0, 1], ["x", "y"], "numeric"),
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
    ],
)
def test_validation_errors(y_true: list, y_prob: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        binary_metrics(y_true, y_prob)


def test_threshold_out_of_range() -> None:
    with pytest.raises(ValueError, match="threshold"):
        binary_metrics(Y, P, threshold=1.5)


def test_curve_points() -> None:
    fpr, tpr, thr = roc_points(Y, P)
    assert fpr[0] == 0.0 and tpr[-1] == 1.0 and len(fpr) == len(tpr) == len(thr)
    precision, recall, thr = pr_points(Y, P)
    assert recall[0] == 1.0 and recall[-1] == 0.0 and len(precision) == len(thr) + 1


@pytest.mark.parametrize("points", [roc_points, pr_points])
def test_curve_points_need_two_classes(points: Callable[..., object]) -> None:
    with pytest.raises(ValueError, match="one class"):
        points([0, 0], [0.1, 0.2])
