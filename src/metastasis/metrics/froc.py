"""Lesion-level FROC as CAMELYON16 computed it (pure compute, numpy only).

CAMELYON16's ``Evaluation_FROC.py`` (Bejnordi et al., JAMA 2017), step by step:

* a detection is a point with a probability; on a slide with tumour, a detection inside a
  lesion is a hit on that lesion, one outside every lesion a false positive (FP); every
  detection on a slide without tumour is a FP;
* several hits on one lesion count once, with the highest probability (``TP_probs`` holds one
  value per lesion, 0 for a lesion never hit);
* lesions of isolated tumour cells (ITC: major axis under 275 um after the annotations were
  grown by 37.5 um on each side, i.e. under 200 um before) are left out of sensitivity, and a
  hit on one is neither a TP nor a FP;
* the curve: the thresholds are the distinct probabilities of FPs and lesions (zeros of
  missed lesions included) but the lowest, each giving (FPs at or above it / slides, hit
  lesions at or above it / non-ITC lesions), with (0, 0) last;
* the score: sensitivity at 1/4, 1/2, 1, 2, 4 and 8 average FPs per slide, read on the curve
  by linear interpolation (``np.interp``, the curve held flat beyond its ends), and their mean.

``slide_hits`` does the first three steps for one slide given which lesion each detection fell
in; ``froc_curve`` and ``froc_score`` do the rest. ``bootstrap_froc`` adds an interval by
resampling slides (not part of CAMELYON16's code).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["FROC_FPS", "SlideHits", "bootstrap_froc", "froc_curve", "froc_score", "slide_hits"]

FROC_FPS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # average false positives per slide
NO_LESION = 0  # a detection outside every lesion
IGNORED = -1  # a detection in an excluded region, outside every lesion: neither TP nor FP


@dataclass
class SlideHits:
    """One slide's contribution: the probabilities of its FPs, and per lesion the highest
    probability of a hit (0 when missed; 0 always for an ITC lesion)."""

    fp_probs: np.ndarray
    tp_probs: np.ndarray
    itc: np.ndarray  # bool per lesion
    detection_outcome: list[str]  # per detection: "tp", "fp", "itc" (ITC hit) or "ignored"

    @property
    def lesions(self) -> int:
        """Lesions counted in sensitivity (not ITC)."""
        return int((~self.itc).sum())


def slide_hits(probs: npt.ArrayLike, hit_lesion: npt.ArrayLike, itc: npt.ArrayLike) -> SlideHits:
    """One slide's hits: ``probs`` of its detections, ``hit_lesion`` the 1-based lesion each
    fell in (``NO_LESION`` = 0 outside every lesion, ``IGNORED`` = -1 in an excluded region),
    ``itc`` one bool per lesion (empty for a slide without tumour: every detection a FP)."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    hit = np.asarray(hit_lesion, dtype=np.int64).reshape(-1)
    is_itc = np.asarray(itc, dtype=bool).reshape(-1)
    if p.shape != hit.shape:
        raise ValueError(f"{len(p)} probabilities but {len(hit)} hit labels")
    if len(hit) and (hit.max() > len(is_itc) or hit.min() < IGNORED):
        raise ValueError(f"hit labels must lie in [-1, {len(is_itc)}]")
    tp = np.zeros(len(is_itc), np.float64)
    outcome = []
    fps = []
    for prob, label in zip(p.tolist(), hit.tolist()):
        if label == NO_LESION:
            fps.append(prob)
            outcome.append("fp")
        elif label == IGNORED:
            outcome.append("ignored")
        elif is_itc[label - 1]:
            outcome.append("itc")
        else:
            outcome.append("tp")
            tp[label - 1] = max(tp[label - 1], prob)  # the official `if p > TP_probs[label]`
    return SlideHits(np.asarray(fps, np.float64), tp, is_itc, outcome)


def froc_curve(slides: Sequence[SlideHits]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(average FPs per slide, sensitivity, threshold) at each threshold of CAMELYON16's
    ``computeFROC``, in its order (thresholds rising; the last point is (0, 0) with threshold
    inf). Sensitivity is NaN when no slide has a non-ITC lesion."""
    if not slides:
        raise ValueError("no slides")
    fp = np.concatenate([s.fp_probs for s in slides])
    tp = np.concatenate([s.tp_probs for s in slides])
    n_lesions = sum(s.lesions for s in slides)
    thresholds = np.unique(np.concatenate([fp, tp]))[1:]  # the lowest is skipped, as there
    fp_sorted, tp_sorted = np.sort(fp), np.sort(tp)
    fp_counts = len(fp) - np.searchsorted(fp_sorted, thresholds, side="left")  # >= t
    tp_counts = len(tp) - np.searchsorted(tp_sorted, thresholds, side="left")
    fps = np.append(fp_counts, 0) / float(len(slides))
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = (
            np.append(tp_counts, 0) / float(n_lesions) if n_lesions else np.full(len(fps), np.nan)
        )
    return fps, sens, np.append(thresholds, np.inf)


def froc_score(
    fps: npt.ArrayLike, sensitivity: npt.ArrayLike, points: Sequence[float] = FROC_FPS
) -> tuple[float, list[float]]:
    """The mean sensitivity at ``points`` average FPs per slide and the sensitivities there,
    read as CAMELYON16 reads them: ``np.interp`` on the curve reversed (FPs rising)."""
    x = np.asarray(fps, np.float64)[::-1]
    y = np.asarray(sensitivity, np.float64)[::-1]
    at = [float(np.interp(v, x, y)) for v in points]
    return float(np.mean(at)), at


def bootstrap_froc(
    slides: Sequence[SlideHits],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float | int | None]:
    """A percentile-bootstrap interval of the FROC score, resampling slides with replacement
    (each resample keeps its slides' detections and lesions together). Resamples without a
    non-ITC lesion are skipped and counted in ``n_skipped``."""
    if not slides:
        raise ValueError("no slides")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_resamples):
        pick = [slides[i] for i in rng.integers(0, len(slides), len(slides))]
        if sum(s.lesions for s in pick) == 0:
            continue
        fps, sens, _ = froc_curve(pick)
        scores.append(froc_score(fps, sens)[0])
    skipped = n_resamples - len(scores)
    if not scores:
        return {"low": None, "high": None, "n_skipped": skipped}
    alpha = (1.0 - confidence) / 2
    low, high = np.percentile(scores, [100 * alpha, 100 * (1 - alpha)])
    return {"low": float(low), "high": float(high), "n_skipped": skipped}
