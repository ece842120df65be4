"""A slides run measured against annotations, as CAMELYON16/17 did (``metastasis slides-eval``).

``evaluate_slides(out_dir, annotations_dir, out=None, **options) -> dict`` is the Python API:
it reads each slide of the run (``OUT/slides.csv``, ``OUT/<slide>/probability.npy`` with its
grid and ``summary.json``) and its annotations (``<slide>.xml`` or ``<slide>.geojson`` in the
annotations folder, as CAMELYON16 laid them out; a slide without a file is negative), and
measures:

* **lesion detection**, CAMELYON16's FROC (``metrics.froc``): detections are the local maxima
  of the (optionally smoothed) map above a floor (``detections``), hits are counted in the
  evaluation regions of ``lesion_truth`` (ITC lesions excluded);
* **slide classification**: ROC-AUC of the slide score (``summary.json``'s ``slide_score``
  where the run wrote one, else the largest value of the map) and accuracy at the slide
  threshold, with percentile-bootstrap intervals over slides;
* **pixels**: Dice and IoU of the thresholded map against the annotations, on the map's grid
  (a cell is tumour when its centre lies in a lesion), within tissue (the classified cells),
  cells in excluded regions left out;
* **categories**: each node's category (negative / ITC / micro / macro, ``staging``) against
  the truth's (the largest annotated lesion's longest diameter, or the stage CSV's), a
  confusion table; and with a stage CSV the pN stage per patient and CAMELYON17's quadratic
  weighted kappa.

Every number of ``metrics.json`` carries its protocol and counts. ``evaluation_report`` writes
the files. Research use only: not a diagnosis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metastasis.errors import DataError
from metastasis.metrics.agreement import dice_iou
from metastasis.metrics.froc import slide_hits
from metastasis.slides import staging
from metastasis.slides.annotations import MASK_SUFFIXES, find_annotation, read_annotations
from metastasis.slides.detections import detections, smooth_map
from metastasis.slides.evaluation_inputs import (
    RunSlide,
    read_labels,
    read_links,
    read_map,
    read_stages,
    run_slides_of,
)
from metastasis.slides.evaluation_options import EvalOptions, eval_options
from metastasis.slides.evaluation_summary import SlideEval, SlidesEvaluation, summarise
from metastasis.slides.lesion_truth import hit_labels, lesion_truth

__all__ = ["SlidesEvaluation", "compute_evaluation", "evaluate_slides"]


def evaluate_slides(
    out_dir: str | Path,
    annotations_dir: str | Path,
    out: str | Path | None = None,
    options: EvalOptions | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Measure the slides run in ``out_dir`` against the annotations in ``annotations_dir``;
    with ``out``, write ``metrics.json``, ``per_slide.csv``, ``froc.csv``, ``detections.csv``,
    ``froc.png`` and ``report.html`` there (checked before anything is read: never inside the
    run or the annotations). ``options``: an ``EvalOptions``, or its settings as keywords
    (labels, stages, patients, smooth, floor, radius_um, threshold, slide_threshold,
    mask_downsample, resamples, seed). Returns the metrics (``metrics.json``)."""
    opts = eval_options({**(options.to_dict() if options is not None else {}), **settings})
    if out is not None:
        from metastasis.slides.evaluation_report import check_eval_outputs, write_evaluation

        check_eval_outputs(Path(out), Path(out_dir), Path(annotations_dir), opts)
    result = compute_evaluation(out_dir, annotations_dir, opts)
    if out is not None:
        write_evaluation(result, Path(out))
    return result.metrics


def compute_evaluation(
    out_dir: str | Path, annotations_dir: str | Path, options: EvalOptions | None = None
) -> SlidesEvaluation:
    """Everything measured, nothing written (``evaluate_slides`` writes it)."""
    opts = options or EvalOptions()
    run, ann_dir = Path(out_dir), Path(annotations_dir)
    if not ann_dir.is_dir():
        raise DataError(f"{ann_dir}: no such annotations folder")
    labels = read_labels(opts.labels) if opts.labels else None
    stages = read_stages(opts.stages) if opts.stages else None
    links = read_links(opts.patients) if opts.patients else {}
    slides = run_slides_of(run)
    evaluated, left_out = [], []
    for rs in slides:
        if rs.summary is None:
            left_out.append({"slide": rs.slide, "reason": f"not analysed ({rs.status})"})
            continue
        try:
            grid = read_map(run / rs.slide)
        except DataError as err:  # a damaged slide folder: this slide is left out, said why
            left_out.append({"slide": rs.slide, "reason": str(err)})
            continue
        truth_cat = stages.slide_category.get(rs.slide.casefold()) if stages else None
        evaluated.append(_evaluate_slide(grid, rs, ann_dir, opts, labels, truth_cat))
    if not evaluated:
        raise DataError(f"{run}: no analysed slide to evaluate")
    names = {rs.slide.casefold() for rs in slides}
    orphans = sorted(
        f.name for f in ann_dir.iterdir()
        if f.suffix.lower() in (".xml", ".geojson") and f.stem.casefold() not in names
    )  # fmt: skip
    return summarise(evaluated, left_out, orphans, opts, run, ann_dir, stages, links)


def _annotation_file(ann_dir: Path, slide: str, opts: EvalOptions) -> Path | None:
    found = find_annotation(ann_dir, slide)
    if found is None and opts.mask_downsample is not None:
        for name in (slide, f"{slide}_mask", f"{slide}_Mask"):
            for suffix in MASK_SUFFIXES:
                if (ann_dir / f"{name}{suffix}").is_file():
                    return ann_dir / f"{name}{suffix}"
    return found


def _evaluate_slide(
    grid: tuple[np.ndarray, dict[str, Any]],
    rs: RunSlide,
    ann_dir: Path,
    opts: EvalOptions,
    labels: dict[str, int] | None,
    truth_category: str | None,
) -> SlideEval:
    summary = rs.summary or {}
    prob, meta = grid
    mpp, step = float(meta["mpp"]), float(meta["step_level0"])
    path = _annotation_file(ann_dir, rs.slide, opts)
    ann = read_annotations(path, downsample=opts.mask_downsample) if path is not None else None
    cut = summary.get("category_cutoffs_mm") or {}
    itc_mm, micro_mm = cut.get("itc", staging.ITC_MM), cut.get("micro", staging.MICRO_MM)
    truth = lesion_truth(ann, mpp, itc_mm, micro_mm)
    label = int(bool(ann is not None and ann.lesions))
    if labels is not None:
        if rs.slide.casefold() not in labels:  # CAMELYON16's reference.csv says Test_001
            raise DataError(f"{opts.labels}: no label for slide {rs.slide!r}")
        label = labels[rs.slide.casefold()]
    outlined = ann is not None or label == 0  # a tumour slide without outlines: no FROC, Dice
    smoothed = smooth_map(prob, opts.smooth)
    radius = max(1, round(opts.radius_um / (step * mpp)))
    det = detections(smoothed, meta, floor=opts.floor, radius=radius)
    exclusion = ann.exclusion if ann is not None else None
    hit = hit_labels(truth, det["x"].to_numpy(), det["y"].to_numpy(), exclusion)
    hits = slide_hits(det["probability"], hit, truth.itc) if outlined else None
    det.insert(0, "slide", rs.slide)
    det["lesion"] = hit
    det["outcome"] = hits.detection_outcome if hits is not None else "unscored"
    finite = smoothed[np.isfinite(smoothed)]
    score = summary.get("slide_score")
    score_source = "summary.json slide_score"
    if score is None:
        score, score_source = (float(finite.max()) if finite.size else 0.0), "max of the map"
    slide_threshold = _first(opts.slide_threshold, summary.get("slide_threshold"),
                             meta.get("threshold"), 0.5)  # fmt: skip
    threshold = float(_first(opts.threshold, meta.get("threshold"), 0.5))
    pixels = _pixel_counts(prob, meta, ann, threshold) if outlined else None
    category = truth_category or (truth.category if outlined else staging.UNKNOWN)
    row = {
        "slide": rs.slide,
        "annotation": path.name if path is not None else "",
        "truth": label,
        "slide_score": float(score),
        "score_source": score_source,
        "predicted": int(float(score) >= float(slide_threshold)),
        "slide_threshold": float(slide_threshold),
        "lesions": len(truth.regions),
        "itc_lesions": int(truth.itc.sum()),
        "lesions_hit": int((hits.tp_probs > 0).sum()) if hits is not None else None,
        "detections": len(det),
        "false_positives": len(hits.fp_probs) if hits is not None else None,
        "truth_largest_mm": truth.largest_diameter_mm,
        "predicted_largest_mm": summary.get("largest_diameter_mm"),
        "truth_category": category,
        "predicted_category": summary.get("category") or staging.UNKNOWN,
        "dice": _ratio_or_none(pixels, "dice"),
        "notes": "; ".join(ann.notes) if ann is not None else "",
    }
    return SlideEval(row, hits, det, pixels)


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _pixel_counts(
    prob: np.ndarray, meta: dict[str, Any], ann: Any, threshold: float
) -> dict[str, int]:
    """Counts of the map's cells (classified, not excluded) against the annotations."""
    import shapely

    rows, cols = np.indices(prob.shape)
    ox, oy = (float(v) for v in meta["cell_origin_level0"])
    step = float(meta["step_level0"])
    x, y = ox + (cols.ravel() + 0.5) * step, oy + (rows.ravel() + 0.5) * step
    truth = np.zeros(prob.size, bool)
    keep = np.isfinite(prob).ravel()
    if ann is not None and ann.lesions:
        truth = shapely.contains_xy(ann.tumour, x, y)
    if ann is not None and ann.exclusion is not None:
        keep &= truth | ~shapely.contains_xy(ann.exclusion, x, y)
    predicted = np.nan_to_num(prob.ravel(), nan=-1.0) >= threshold
    return dice_iou(predicted, truth, keep)[2]


def _ratio_or_none(counts: dict[str, int] | None, what: str) -> float | None:
    if counts is None:
        return None
    den = counts["predicted"] + counts["truth"] if what == "dice" else counts["union"]
    if den == 0:
        return None
    return (2.0 if what == "dice" else 1.0) * counts["intersection"] / den
