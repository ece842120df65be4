"""metrics.froc: CAMELYON16's FROC on a hand-made case (3 slides: a double hit, an ITC hit, a
missed lesion, false positives on a tumour and a normal slide), checked against values worked out
by hand and against a line-by-line transcription of the official computeFROC."""

from __future__ import annotations

import numpy as np
import pytest

from metastasis.metrics.froc import IGNORED, bootstrap_froc, froc_curve, froc_score, slide_hits

# Slide A: lesions 1, 2 (missed) and 3 (ITC); detections 0.9 and 0.6 on lesion 1 (a double
# hit), 0.8 on the ITC lesion, 0.7 outside. Slide B: lesion 1 hit at 0.4, 0.95 outside.
# Slide C (normal): 0.5 and 0.3.
A = slide_hits([0.9, 0.6, 0.8, 0.7], [1, 1, 3, 0], [False, False, True])
B = slide_hits([0.4, 0.95], [1, 0], [False])
C = slide_hits([0.5, 0.3], [0, 0], [])


def official_froc(fp_lists: list[list[float]], tp_lists: list[list[float]], tumours: list[int]):
    """computeFROC of CAMELYON16's Evaluation_FROC.py, transcribed (lists, a loop per threshold)."""
    unlisted_fps = [p for sub in fp_lists for p in sub]
    unlisted_tps = [p for sub in tp_lists for p in sub]
    total_fps, total_tps = [], []
    all_probs = sorted(set(unlisted_fps + unlisted_tps))
    for thresh in all_probs[1:]:
        total_fps.append((np.asarray(unlisted_fps) >= thresh).sum())
        total_tps.append((np.asarray(unlisted_tps) >= thresh).sum())
    total_fps.append(0)
    total_tps.append(0)
    return np.asarray(total_fps) / float(len(fp_lists)), np.asarray(total_tps) / float(sum(tumours))


def test_hits_count_a_lesion_once_at_its_highest_probability_and_ignore_itc_hits() -> None:
    assert A.tp_probs.tolist() == [0.9, 0.0, 0.0]  # the double hit once; missed and ITC: 0
    assert A.fp_probs.tolist() == [0.7]
    assert A.detection_outcome == ["tp", "tp", "itc", "fp"]
    assert (A.lesions, B.lesions, C.lesions) == (2, 1, 0)
    assert C.fp_probs.tolist() == [0.5, 0.3]  # a normal slide: every detection is a FP


def test_froc_curve_and_score_match_hand_computed_values() -> None:
    fps, sens, thresholds = froc_curve([A, B, C])
    # thresholds: the distinct probabilities but the lowest (0, from the missed lesion)
    assert thresholds.tolist() == [0.3, 0.4, 0.5, 0.7, 0.9, 0.95, np.inf]
    np.testing.assert_allclose(fps, [4 / 3, 1, 1, 2 / 3, 1 / 3, 1 / 3, 0], atol=1e-12)
    np.testing.assert_allclose(sens, [2 / 3, 2 / 3, 1 / 3, 1 / 3, 1 / 3, 0, 0], atol=1e-12)
    score, at = froc_score(fps, sens)
    np.testing.assert_allclose(at, [0, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3], atol=1e-12)
    assert score == pytest.approx(0.5, abs=1e-9)


def test_froc_agrees_with_the_transcribed_official_code() -> None:
    slides = [A, B, C]
    fps, sens = official_froc(
        [s.fp_probs.tolist() for s in slides],
        [s.tp_probs.tolist() for s in slides],
        [s.lesions for s in slides],
    )
    ours = froc_curve(slides)
    np.testing.assert_allclose(ours[0], fps, atol=1e-12)
    np.testing.assert_allclose(ours[1], sens, atol=1e-12)
    official = np.mean([np.interp(v, fps[::-1], sens[::-1]) for v in (0.25, 0.5, 1, 2, 4, 8)])
    assert froc_score(*ours[:2])[0] == pytest.approx(official, abs=1e-9)


def test_ignored_detections_no_detections_and_bad_labels() -> None:
    s = slide_hits([0.9], [IGNORED], [False])
    assert s.detection_outcome == ["ignored"] and len(s.fp_probs) == 0
    fps, sens, _ = froc_curve([slide_hits([], [], [False])])  # a lesion, nothing detected
    assert fps.tolist() == [0.0] and sens.tolist() == [0.0]
    assert froc_score(fps, sens)[0] == 0.0
    with pytest.raises(ValueError, match="hit labels"):
        slide_hits([0.5], [2], [False])


def test_bootstrap_interval_resamples_whole_slides() -> None:
    ci = bootstrap_froc([A, B, C], n_resamples=300, seed=1)
    assert 0.0 <= ci["low"] <= 0.5 <= ci["high"] <= 1.0  # the score itself lies inside
    assert bootstrap_froc([A, B, C], 300, seed=1) == ci  # the same seed, the same interval
    only_normal = bootstrap_froc([C], n_resamples=5)
    assert only_normal == {"low": None, "high": None, "n_skipped": 5}


def test_the_lowest_probability_is_never_a_threshold_as_in_the_official_code() -> None:
    # one lesion hit at 0.9 and nothing else: the only threshold would be 0.9, the lowest
    # distinct probability, which computeFROC skips: the curve is (0, 0) alone
    fps, sens, _ = froc_curve([slide_hits([0.9], [1], [False])])
    assert froc_score(fps, sens)[0] == 0.0
    # a missed lesion (0) or a lower false positive is the lowest instead: 0.9 is a threshold
    fps, sens, _ = froc_curve([slide_hits([0.9, 0.2], [1, 0], [False])])
    assert froc_score(fps, sens)[0] == 1.0
