"""Tests for metastasis.metrics.bootstrap: exact fast AUC, brute-force intervals, speed."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from metastasis.metrics.bootstrap import BOOTSTRAP_METRICS, bootstrap_ci, resampled_roc_auc
from metastasis.metrics.classification import binary_metrics


def _data(n: int, seed: int = 0, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    return y, (p.round(decimals) if decimals is not None else p)


@pytest.mark.parametrize("decimals", [None, 2])  # distinct scores, and many ties
def test_resampled_auc_equals_sklearn(decimals: int | None) -> None:
    y, p = _data(300, decimals=decimals)
    rows = np.random.default_rng(1).integers(0, len(y), size=(20, len(y)))
    rows = np.vstack([np.arange(len(y)), rows])
    fast = resampled_roc_auc(y, p, rows)
    expected = [roc_auc_score(y[r], p[r]) for r in rows]
    np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-12)
    assert fast[0] == pytest.approx(binary_metrics(y, p)["roc_auc"], abs=1e-12)


def test_resampled_auc_is_nan_without_a_class() -> None:
    out = resampled_roc_auc([0, 1, 1], [0.2, 0.6, 0.9], [[1, 2, 2], [0, 1, 2]])
    assert np.isnan(out[0]) and out[1] == 1.0
    with pytest.raises(ValueError, match="2-D"):
        resampled_roc_auc([0, 1], [0.2, 0.6], [0, 1])


def test_intervals_match_a_brute_force_bootstrap() -> None:
    y, p = _data(150, seed=2, decimals=2)
    ci = bootstrap_ci(y, p, threshold=0.45, n_resamples=200, confidence=0.9, seed=7)
    # one chunk for this size, so the same generator draws the same indices
    rows = np.random.default_rng(7).integers(0, len(y), size=(200, len(y)))
    values: dict[str, list[float]] = {name: [] for name in BOOTSTRAP_METRICS}
    for r in rows:
        m = binary_metrics(y[r], p[r], threshold=0.45)
        for name in BOOTSTRAP_METRICS:
            values[name].append(m[name])
    for name in BOOTSTRAP_METRICS:
        low, high = np.percentile(values[name], [5, 95])
        assert ci[name] == {
            "low": pytest.approx(low, abs=1e-12),
            "high": pytest.approx(high, abs=1e-12),
            "n_skipped": 0,
        }


def test_ci_contains_the_estimate_and_narrows_with_more_data() -> None:
    widths = []
    for n in (200, 5000):
        y, p = _data(n, seed=n)
        point = binary_metrics(y, p)
        ci = bootstrap_ci(y, p)
        for name in BOOTSTRAP_METRICS:
            assert ci[name]["low"] <= point[name] <= ci[name]["high"]
        widths.append(ci["roc_auc"]["high"] - ci["roc_auc"]["low"])
    assert widths[1] < widths[0] / 3  # ~ 1 / sqrt(n): sqrt(25) = 5


def test_same_seed_same_numbers() -> None:
    y, p = _data(500)
    assert bootstrap_ci(y, p, seed=3) == bootstrap_ci(y, p, seed=3)
    assert bootstrap_ci(y, p, seed=3) != bootstrap_ci(y, p, seed=4)


def test_resamples_lacking_a_class_are_skipped_and_counted() -> None:
    y, p = [0, 0, 0, 0, 0, 1], [0.1, 0.2, 0.3, 0.4, 0.5, 0.9]
    ci = bootstrap_ci(y, p, n_resamples=500)
    skipped = ci["roc_auc"]["n_skipped"]
    assert 100 < skipped < 250  # no positive drawn: (5/6)^6 = 0.33
    assert ci["sensitivity"]["n_skipped"] == skipped
    assert ci["accuracy"]["n_skipped"] == 0 and ci["specificity"]["n_skipped"] == 0
    only_negatives = bootstrap_ci([0, 0, 0], [0.1, 0.6, 0.3], n_resamples=50)
    assert only_negatives["roc_auc"] == {"low": None, "high": None, "n_skipped": 50}
    assert only_negatives["specificity"]["low"] is not None


def test_arguments_are_validated() -> None:
    y, p = _data(20)
    for kwargs, message in (
        ({"threshold": 1.5}, "threshold"),
        ({"confidence": 1.0}, "confidence"),
        ({"n_resamples": 0}, "n_resamples"),
    ):
        with pytest.raises(ValueError, match=message):
            bootstrap_ci(y, p, **kwargs)
