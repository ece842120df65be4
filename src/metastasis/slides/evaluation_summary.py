"""The measurements of ``slides-eval`` over all slides, each with its protocol and counts: FROC,
slide-level ROC-AUC and accuracy (bootstrap over slides), pixel Dice and IoU, categories and,
with a stage CSV, pN stages per patient with quadratic weighted kappa (``evaluation``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metastasis.metrics.agreement import PN_STAGES, confusion_table, quadratic_weighted_kappa
from metastasis.metrics.froc import (
    FROC_FPS,
    SlideHits,
    bootstrap_froc,
    froc_curve,
    froc_score,
)
from metastasis.slides import staging
from metastasis.slides.evaluation_inputs import Stages
from metastasis.slides.evaluation_options import EvalOptions

CONFIDENCE = 0.95
FROC_PROTOCOL = (
    "CAMELYON16 FROC (Evaluation_FROC.py): a detection is a point, a local maximum of the map; "
    "a hit inside a lesion grown by 37.5 um is a true positive (several hits on one lesion "
    "count once, at their highest probability), one outside every lesion a false positive; "
    "ITC lesions (major axis < 275 um after growing) excluded: hits on them are neither; mean "
    "sensitivity at 1/4, 1/2, 1, 2, 4, 8 average false positives per slide (np.interp); 95% "
    "percentile-bootstrap interval resampling slides"
)
SLIDE_PROTOCOL = (
    "slide-level classification (CAMELYON16): ROC-AUC of the slide score and accuracy at the "
    "slide threshold; 95% percentile-bootstrap intervals resampling slides"
)
PIXEL_PROTOCOL = (
    "tile cells of the probability map within tissue (the classified cells), predicted tumour "
    "at probability >= threshold, true tumour when the cell's centre lies in an annotated "
    "lesion; cells in excluded regions left out; counts pooled over slides"
)
CATEGORY_PROTOCOL = (
    "node category (CAMELYON17: negative / itc / micro / macro by the largest lesion's longest "
    "diameter, cut-offs 0.2 and 2 mm unless the run set others) of the run against the "
    "truth's (the largest annotated lesion's maximum Feret diameter, or the stage CSV)"
)
PATIENT_PROTOCOL = (
    "CAMELYON17 pN staging: stage per patient from the categories of their nodes; quadratic "
    "weighted kappa over pN0, pN0(i+), pN1mi, pN1, pN2; patients with an unknown stage left out"
)


@dataclass
class SlideEval:
    """One slide measured: its ``per_slide.csv`` row, its FROC hits (None: left out of the
    FROC), its detections and its pixel counts (None: left out of Dice and IoU)."""

    row: dict[str, Any]
    hits: SlideHits | None
    detections: pd.DataFrame
    pixels: dict[str, int] | None


@dataclass
class SlidesEvaluation:
    """Everything ``slides-eval`` writes: ``metrics`` is ``metrics.json``."""

    metrics: dict[str, Any]
    per_slide: pd.DataFrame
    froc: pd.DataFrame  # fps_per_slide, sensitivity, threshold
    detections: pd.DataFrame
    confusion: pd.DataFrame  # true category (rows) x predicted (columns)
    patients: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def summarise(
    evaluated: list[SlideEval],
    left_out: list[dict[str, str]],
    orphans: list[str],
    opts: EvalOptions,
    run: Path,
    ann_dir: Path,
    stages: Stages | None,
    links: dict[str, str],
) -> SlidesEvaluation:
    per_slide = pd.DataFrame([e.row for e in evaluated])
    froc_metrics, froc_table = _froc(evaluated, opts)
    cats = [*staging.CATEGORIES, staging.UNKNOWN]
    confusion = confusion_table(list(per_slide["truth_category"]),
                                list(per_slide["predicted_category"]), cats)  # fmt: skip
    patients, patient_metrics = _patients(per_slide, stages, links)
    notes = []
    if orphans:
        notes.append(f"{len(orphans)} annotation files match no slide of the run ({orphans[0]})")
    if left_out:
        notes.append(f"{len(left_out)} slides of the run left out ({left_out[0]['slide']}: "
                     f"{left_out[0]['reason']})")  # fmt: skip
    metrics = {
        "research_use_only": "not a diagnosis",
        "run": str(run),
        "annotations": str(ann_dir),
        "options": opts.to_dict(),
        "slides": {
            "evaluated": len(per_slide),
            "tumour": int(per_slide["truth"].sum()),
            "normal": int((per_slide["truth"] == 0).sum()),
            "left_out": left_out,
        },
        "froc": froc_metrics,
        "slide_classification": _slide_level(per_slide, opts),
        "pixels": _pixels(evaluated, per_slide),
        "categories": {
            "protocol": CATEGORY_PROTOCOL,
            "labels": cats,
            "confusion": confusion.tolist(),
            "accuracy": float(np.trace(confusion) / confusion.sum()),
            "slides": int(confusion.sum()),
        },
        "patients": patient_metrics,
        "notes": notes,
    }
    frame = pd.DataFrame(confusion, index=cats, columns=cats)
    dets = pd.concat([e.detections for e in evaluated], ignore_index=True)
    return SlidesEvaluation(metrics, per_slide, froc_table, dets, frame, patients, notes)


def _froc(evaluated: list[SlideEval], opts: EvalOptions) -> tuple[dict[str, Any], pd.DataFrame]:
    scored = [e.hits for e in evaluated if e.hits is not None]
    left = len(evaluated) - len(scored)
    counts = {
        "slides": len(scored),
        "slides_left_out": left,
        "lesions": sum(h.lesions for h in scored),
        "itc_lesions": int(sum(h.itc.sum() for h in scored)),
        "detections": sum(len(h.detection_outcome) for h in scored),
        "false_positives": sum(len(h.fp_probs) for h in scored),
    }
    notes: list[str] = []
    base: dict[str, Any] = {"protocol": FROC_PROTOCOL, **counts, "notes": notes}
    if left:
        notes.append(f"{left} tumour slides without an annotation file are left out")
    if not scored:
        return {**base, "score": None}, pd.DataFrame(columns=["fps_per_slide", "sensitivity"])
    fps, sens, thresholds = froc_curve(scored)
    lowest = min((float(v.min()) for h in scored for v in (h.fp_probs, h.tp_probs) if v.size),
                 default=0.0)  # fmt: skip
    if lowest > 0:  # nothing missed: the lowest probability of all is a detection's
        notes.append(f"as in CAMELYON16's code, the lowest probability ({lowest:.4g}) is not "
                     "a threshold: the detections at it count neither way")  # fmt: skip
    table = pd.DataFrame({"fps_per_slide": fps, "sensitivity": sens, "threshold": thresholds})
    if counts["lesions"] == 0:
        notes.append("no non-ITC lesion: sensitivity undefined")
        return {**base, "score": None}, table
    score, at = froc_score(fps, sens)
    points = {f"{v:g}": s for v, s in zip(FROC_FPS, at)}
    ci = bootstrap_froc(scored, opts.resamples, CONFIDENCE, opts.seed)
    return {**base, "score": score, "score_ci": ci, "sensitivity_at_fps": points}, table


def _slide_level(per_slide: pd.DataFrame, opts: EvalOptions) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from metastasis.metrics.bootstrap import bootstrap_ci

    y = per_slide["truth"].to_numpy(np.int64)
    score = per_slide["slide_score"].to_numpy(np.float64)
    pred = per_slide["predicted"].to_numpy(np.int64)
    n_pos = int(y.sum())
    out: dict[str, Any] = {
        "protocol": SLIDE_PROTOCOL,
        "score": sorted(set(per_slide["score_source"])),
        "slide_threshold": sorted(set(per_slide["slide_threshold"].astype(float))),
        "slides": len(y),
        "tumour_slides": n_pos,
        "accuracy": float((pred == y).mean()),
        "sensitivity": float(pred[y == 1].mean()) if n_pos else None,
        "specificity": float((1 - pred[y == 0]).mean()) if n_pos < len(y) else None,
        "roc_auc": float(roc_auc_score(y, score)) if 0 < n_pos < len(y) else None,
        "resamples": opts.resamples,
        "confidence": CONFIDENCE,
        "seed": opts.seed,
    }
    ranks = (pd.Series(score).rank(method="average").to_numpy() - 1) / max(len(score) - 1, 1)
    n, seed = opts.resamples, opts.seed  # the same seed: the same resampled slides for both
    by_rank = bootstrap_ci(y, ranks, 0.5, n, CONFIDENCE, seed)  # ROC-AUC: the order alone
    by_call = bootstrap_ci(y, pred.astype(np.float64), 0.5, n, CONFIDENCE, seed)
    out["roc_auc_ci"] = by_rank["roc_auc"]
    for name in ("accuracy", "sensitivity", "specificity"):
        out[f"{name}_ci"] = by_call[name]
    return out


def _pixels(evaluated: list[SlideEval], per_slide: pd.DataFrame) -> dict[str, Any]:
    counted = [e.pixels for e in evaluated if e.pixels is not None]
    total = {k: sum(c[k] for c in counted) for k in ("intersection", "predicted", "truth",
                                                     "union", "pixels")}  # fmt: skip
    den = total["predicted"] + total["truth"]
    tumour_dice = per_slide.loc[per_slide["truth"] == 1, "dice"].dropna()
    return {
        "protocol": PIXEL_PROTOCOL,
        "dice": 2.0 * total["intersection"] / den if den else None,
        "iou": total["intersection"] / total["union"] if total["union"] else None,
        "mean_dice_tumour_slides": float(tumour_dice.mean()) if len(tumour_dice) else None,
        "slides": len(counted),
        "cells": total,
    }


def _patients(
    per_slide: pd.DataFrame, stages: Stages | None, links: dict[str, str]
) -> tuple[pd.DataFrame | None, dict[str, Any] | None]:
    """pN stage per patient, predicted (the run's categories) and true, and the kappa."""
    if stages is None:
        return None, None
    link = {**stages.slide_patient, **links}
    patients = sorted(set(link.values()) | set(stages.patient_stage))
    slides = per_slide["slide"].str.casefold()
    predicted = dict(zip(slides, per_slide["predicted_category"]))
    truth = dict(zip(slides, per_slide["truth_category"]))
    rows = []
    for patient in patients:
        nodes = sorted(s for s, p in link.items() if p == patient)
        pred = staging.pn_stage([predicted.get(s) for s in nodes]) if nodes else "unknown"
        true = stages.patient_stage.get(patient) or (
            staging.pn_stage([truth.get(s) for s in nodes]) if nodes else "unknown"
        )
        rows.append({"patient": patient, "slides": len(nodes),
                     "truth_stage": true, "predicted_stage": pred})  # fmt: skip
    frame = pd.DataFrame(rows, columns=["patient", "slides", "truth_stage", "predicted_stage"])
    known = frame[(frame["truth_stage"] != "unknown") & (frame["predicted_stage"] != "unknown")]
    labels = [*PN_STAGES, *(["pN3"] if "pN3" in set(known.to_numpy().ravel()) else [])]
    kappa = quadratic_weighted_kappa(list(known["truth_stage"]),
                                     list(known["predicted_stage"]), labels)  # fmt: skip
    return frame, {
        "protocol": PATIENT_PROTOCOL,
        "kappa": kappa if np.isfinite(kappa) else None,
        "patients": len(frame),
        "scored": len(known),
        "unknown": len(frame) - len(known),
        "accuracy": float((known["truth_stage"] == known["predicted_stage"]).mean())
        if len(known)
        else None,
        "labels": labels,
    }
