"""metrics.agreement: quadratic weighted kappa by hand and against scikit-learn, confusion
tables, Dice and IoU of known masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from metastasis.metrics.agreement import (
    PN_STAGES,
    confusion_table,
    dice_iou,
    quadratic_weighted_kappa,
)


def test_kappa_matches_a_hand_computed_value_and_scikit_learn() -> None:
    truth = ["pN0", "pN1", "pN2", "pN0(i+)"]
    pred = ["pN0", "pN2", "pN2", "pN0"]
    # observed weighted disagreement 2/16; expected (26 + 26) / 32: kappa = 1 - 1/13
    assert quadratic_weighted_kappa(truth, pred) == pytest.approx(12 / 13, abs=1e-12)
    ref = cohen_kappa_score(truth, pred, labels=list(PN_STAGES), weights="quadratic")
    assert quadratic_weighted_kappa(truth, pred) == pytest.approx(ref, abs=1e-12)
    assert quadratic_weighted_kappa(truth, truth) == pytest.approx(1.0)
    assert math.isnan(quadratic_weighted_kappa(["pN0"], ["pN0"]))  # one category: undefined


def test_confusion_table_rows_are_truth_and_unknown_labels_are_refused() -> None:
    t = confusion_table(["a", "b", "b"], ["a", "a", "b"], ["a", "b"])
    assert t.tolist() == [[1, 0], [1, 1]]
    with pytest.raises(ValueError, match="not among"):
        confusion_table(["c"], ["a"], ["a", "b"])


def test_dice_and_iou_of_known_masks_within_a_region() -> None:
    pred = np.zeros((4, 4), bool)
    true = np.zeros((4, 4), bool)
    pred[0, :3] = True  # 3 cells
    true[0, 1:] = True  # 3 cells, 2 shared
    dice, iou, counts = dice_iou(pred, true)
    assert dice == pytest.approx(4 / 6) and iou == pytest.approx(2 / 4)
    assert counts == {"intersection": 2, "predicted": 3, "truth": 3, "union": 4, "pixels": 16}
    within = np.ones((4, 4), bool)
    within[0, 0] = False  # the only cell where they disagree on the left
    dice, iou, _ = dice_iou(pred, true, within)
    assert dice == pytest.approx(4 / 5) and iou == pytest.approx(2 / 3)
    assert all(math.isnan(v) for v in dice_iou(np.zeros(3, bool), np.zeros(3, bool))[:2])
