"""Tests for metastasis.metrics.calibration: hand-computed ECE, sklearn Brier, temperature."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import brier_score_loss, log_loss

from metastasis.metrics.calibration import (
    apply_temperature,
    bin_edges,
    bin_indices,
    brier_score,
    expected_calibration_error,
    fit_temperature,
    logits_from_probs,
    reliability_curve,
)

# Five bins (0, .2], (.2, .4], (.4, .6], (.6, .8], (.8, 1]; 0 goes to the first, edges to the left.
Y = [0, 0, 1, 0, 1, 1, 1, 0]
P = [0.0, 0.1, 0.2, 0.3, 0.55, 0.6, 0.9, 1.0]


def test_bin_indices_edges_belong_to_the_lower_bin() -> None:
    assert bin_indices(P, 5).tolist() == [0, 0, 0, 1, 2, 2, 4, 4]
    assert bin_indices([k / 15 for k in range(16)], 15).tolist() == [0, *range(15)]
    assert bin_edges(4).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="n_bins"):
        bin_indices(P, 0)


def test_ece_hand_computed() -> None:
    # bin 0: p {0, .1, .2} y {0, 0, 1}: |1/3 - 0.1| * 3;  bin 1: p .3 y 0: 0.3 * 1
    # bin 2: p {.55, .6} y {1, 1}: |1 - .575| * 2;  bin 3 empty;  bin 4: p {.9, 1} y {1, 0}: .45 * 2
    expected = (0.7 + 0.3 + 0.85 + 0.9) / 8
    assert expected_calibration_error(Y, P, n_bins=5) == pytest.approx(expected)
    assert expected == pytest.approx(0.34375)


def test_ece_matches_a_direct_loop() -> None:
    rng = np.random.default_rng(3)
    p = rng.random(500) ** 2
    y = (rng.random(500) < p**0.7).astype(int)
    total = 0.0
    for k in range(15):
        low, high = k / 15, (k + 1) / 15
        in_bin = (p > low) & (p <= high) if k else (p <= high)
        if in_bin.any():
            total += abs(y[in_bin].mean() - p[in_bin].mean()) * in_bin.sum()
    assert expected_calibration_error(y, p) == pytest.approx(total / len(p))


def test_ece_zero_when_perfectly_calibrated_and_one_when_totally_wrong() -> None:
    assert expected_calibration_error([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.0)
    assert expected_calibration_error([1, 0], [0.0, 1.0]) == pytest.approx(1.0)


def test_reliability_curve_keeps_empty_bins_as_nan() -> None:
    curve = reliability_curve(Y, P, n_bins=5)
    assert curve["count"].tolist() == [3, 1, 2, 0, 2]
    np.testing.assert_allclose(curve["bin_edges"], [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(curve["mean_predicted"], [0.1, 0.3, 0.575, np.nan, 0.95])
    np.testing.assert_allclose(curve["observed_fraction"], [1 / 3, 0, 1, np.nan, 0.5])


def test_brier_equals_sklearn() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(200)
    y = rng.integers(0, 2, 200)
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-15)
    assert brier_score(Y, P) == pytest.approx(brier_score_loss(Y, P), abs=1e-15)


def test_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        expected_calibration_error([0, 1], [0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score([0, 1], [0.5, 1.5])


def _synthetic(temperature: float, n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 4.0, n)
    y = (rng.random(n) < expit(z / temperature)).astype(int)
    return z, y


def test_fit_temperature_recovers_a_known_temperature_and_lowers_nll() -> None:
    z, y = _synthetic(2.0)
    t = fit_temperature(z, y)
    assert abs(t - 2.0) < 0.1
    before = log_loss(y, expit(z))
    after = log_loss(y, apply_temperature(z, t))
    assert after < before - 0.01
    assert fit_temperature(z, y) == t  # deterministic
    z_sharp, y_sharp = _synthetic(0.5, seed=1)
    assert abs(fit_temperature(z_sharp, y_sharp) - 0.5) < 0.05


def test_fit_temperature_from_probabilities() -> None:
    z, y = _synthetic(2.0)
    from_probs = fit_temperature(logits_from_probs(expit(z)), y)
    assert from_probs == pytest.approx(fit_temperature(z, y), abs=0.02)


def test_fit_temperature_is_one_when_nothing_to_fit() -> None:
    assert fit_temperature([], []) == 1.0
    assert fit_temperature([0.3, -1.0, 2.0], [1, 1, 1]) == 1.0
    assert fit_temperature([0.0, 0.0], [0, 1]) == 1.0
    with pytest.raises(ValueError, match="finite"):
        fit_temperature([np.inf, 0.0], [0, 1])
    with pytest.raises(ValueError, match="equal length"):
        fit_temperature([0.0, 1.0], [0])


def test_logits_and_temperature_helpers() -> None:
    logits = logits_from_probs([0.0, 0.5, 0.731058578630, 1.0])
    assert np.isfinite(logits).all()
    assert logits[1] == pytest.approx(0.0) and logits[2] == pytest.approx(1.0)
    assert logits[0] == pytest.approx(-logits[3]) and logits[3] > 15
    np.testing.assert_allclose(apply_temperature([0.0, 2.0], 2.0), [0.5, expit(1.0)])
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature([0.0], 0.0)
