"""Lesions worth reporting: raw thresholding against the post-processing defaults, on annotated
synthetic slides (``make_eval_slides.py``), and a small sweep of the post-processing settings.

    python benchmarks/slides_postprocess.py /tmp/eval-slides --checkpoint /work/models/fast-cpu \\
        --out /tmp/pp-fast --sweep

Runs ``metastasis slides`` once on the slides with the defaults (its ``summary.json`` gives the
defaults' lesions, category and slide score), then, from each slide's ``probability.npy``
(the raw map, which post-processing never changes), draws the lesions again with the same
functions (``regions.find_lesions`` + ``postprocess``) for each setting: *raw* (no smoothing,
seed = grow = the model's threshold, 1 tile: the behaviour before post-processing), the
defaults (checked against the run's own ``summary.json``) and, with ``--sweep``, a grid of
sigma x seed x minimum size. Per setting:

* false-positive lesions: reported lesions that touch no annotated lesion (within 75 um, the
  tolerance CAMELYON16's evaluation gives), on negative slides and on all slides;
* lesions found: annotated lesions (non-ITC) that a reported lesion overlaps;
* the largest lesion's size error: |largest reported - largest annotated| longest diameter, mm,
  on micro- and macro-metastasis slides (a slide without a reported lesion: the whole
  diameter);
* categories against the truth (accuracy, quadratic weighted kappa) and pN stages per patient
  (quadratic weighted kappa);
* FROC as CAMELYON16 scored it (``metrics.froc``, as ``slides-eval``): one detection per
  reported lesion at its cell of largest smoothed probability, scored by that value; a hit
  when it falls inside an annotated lesion (dilated by 75 um); detections on ITC lesions
  (<= 0.2 mm) neither hit nor false, ITC lesions left out of the sensitivity; the mean
  sensitivity at 1/4, 1/2, 1, 2, 4 and 8 false positives per slide, read off the curve as
  CAMELYON16's code reads it;
* slide-level ROC-AUC of the slide score (``peak``: the largest tile probability of the raw
  map; ``max``: max of the smoothed map; ``diameter``: the largest reported lesion's longest
  diameter).

Writes ``OUT/postprocess.json`` (every setting, per-slide rows) and prints the table rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from metastasis.metrics.froc import FROC_FPS, NO_LESION, froc_curve, froc_score, slide_hits
from metastasis.slides.options import slide_options
from metastasis.slides.postprocess import PostProcess, lesion_mask, slide_score, smooth
from metastasis.slides.regions import find_lesions
from metastasis.slides.staging import CATEGORIES, STAGES, pn_stage, slide_category

TOLERANCE_UM = 75.0  # CAMELYON16: annotations dilated by 75 um (5 tumour cells)


def run_slides(slides: Path, checkpoint: Path, out: Path, tta: str | None) -> dict[str, float]:
    cmd = [sys.executable, "-m", "metastasis", "slides", str(slides), "--checkpoint",
           str(checkpoint), "--out", str(out), "--no-progress"]  # fmt: skip
    if tta:
        cmd += ["--tta", tta]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"wall_s": round(time.perf_counter() - start, 1), "cpu_s": round(cpu, 1)}


def load(out: Path, truth: dict[str, Any]) -> list[dict[str, Any]]:
    """Per slide: the raw map, its geometry, the run's summary and the annotated lesions."""
    import shapely

    slides = []
    for t in truth["slides"]:
        folder = out / t["slide"]
        meta = json.loads((folder / "probability.json").read_text())
        summary = json.loads((folder / "summary.json").read_text())
        tol = TOLERANCE_UM / truth["mpp"]
        lesions = [(shapely.Polygon(les["polygon_px"]).buffer(tol), les["diameter_mm"],
                    les["category"]) for les in t["lesions"]]  # fmt: skip
        slides.append({"truth": t, "meta": meta, "summary": summary, "lesions": lesions,
                       "probability": np.load(folder / "probability.npy")})  # fmt: skip
    return slides


def detections(prob: np.ndarray, post: PostProcess, origin: float, step: float) -> list:
    """(x, y, score) of each reported lesion: its cell of largest smoothed probability."""
    from scipy import ndimage

    s = smooth(prob, post.sigma_cells)
    labels, n = ndimage.label(lesion_mask(prob, post))
    out = []
    for k in range(1, n + 1):
        vals = np.where(labels == k, np.nan_to_num(s, nan=-1.0), -np.inf)
        r, c = np.unravel_index(int(np.argmax(vals)), vals.shape)
        out.append((origin + (c + 0.5) * step, origin + (r + 0.5) * step, float(vals[r, c])))
    return out


def evaluate_slide(sl: dict[str, Any], post: PostProcess) -> dict[str, Any]:
    import shapely

    meta, t = sl["meta"], sl["truth"]
    origin, step, mpp = meta["cell_origin_level0"][0], meta["step_level0"], meta["mpp"]
    if post != PostProcess.raw(post.grow, post.score):  # raw: every set of cells, at any stride
        post = replace(post, tile_cells=meta["tile_size_level0"] / step)  # sigma, sizes in tiles
    prob = sl["probability"]
    found = find_lesions(prob, meta["threshold"], (origin, origin), step, mpp, post)
    truth_polys = [p for p, _, _ in sl["lesions"]]
    false = [les for les in found if not any(les.polygon.intersects(p) for p in truth_polys)]
    hit = [any(les.polygon.intersects(p) for les in found) for p in truth_polys]
    cats = [c for _, _, c in sl["lesions"]]
    largest = found[0].diameter_mm if found else None
    true_largest = max((d for _, d, _ in sl["lesions"]), default=None)
    dets = []
    for x, y, score in detections(prob, post, origin, step):
        pt = shapely.Point(x, y)
        inside = [i for i, p in enumerate(truth_polys) if p.contains(pt)]
        dets.append({"score": score, "lesion": inside[0] if inside else None,
                     })  # fmt: skip
    return {
        "slide": t["slide"], "patient": t["patient"], "truth": t["category"],
        "category": slide_category(largest), "lesions": len(found), "false_lesions": len(false),
        "true_lesions": sum(c != "itc" for c in cats), "itc_lesions": [c == "itc" for c in cats],
        "found": sum(h for h, c in zip(hit, cats) if c != "itc"),
        "largest_mm": largest, "true_largest_mm": true_largest,
        "size_error_mm": abs((largest or 0.0) - true_largest)
        if t["category"] in ("micro", "macro") and true_largest else None,
        "score_max": slide_score(prob, largest, PostProcess(**{**post.describe(), "score": "max"})),
        "score_peak": float(np.nanmax(prob)),
        "score_diameter": float(largest or 0.0), "detections": dets,
    }  # fmt: skip


def froc(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """CAMELYON16's FROC from the detections of every slide, with ``metrics.froc`` (the
    functions ``slides-eval`` scores with)."""
    slides = [
        slide_hits(
            [d["score"] for d in r["detections"]],
            [NO_LESION if d["lesion"] is None else d["lesion"] + 1 for d in r["detections"]],
            r["itc_lesions"],
        )
        for r in rows
    ]
    fps, sens, _ = froc_curve(slides)
    score, at = froc_score(fps, sens)
    return {"froc": score, "sensitivity_at": dict(zip(map(str, FROC_FPS), at))}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    neg = [r for r in rows if r["truth"] == "negative"]
    labels = [r["truth"] != "negative" for r in rows]
    errors = [r["size_error_mm"] for r in rows if r["size_error_mm"] is not None]
    three = [r for r in rows if r["truth"] == "macro"]
    patients: dict[str, tuple[list[str], list[str]]] = {}
    for r in rows:
        p = patients.setdefault(r["patient"], ([], []))
        p[0].append(r["truth"])
        p[1].append(r["category"])
    stages_true = [pn_stage(t) for t, _ in patients.values()]
    stages_pred = [pn_stage(p) for _, p in patients.values()]
    return {
        **froc(rows),
        "auc_max": float(roc_auc_score(labels, [r["score_max"] for r in rows])),
        "auc_peak": float(roc_auc_score(labels, [r["score_peak"] for r in rows])),
        "auc_diameter": float(roc_auc_score(labels, [r["score_diameter"] for r in rows])),
        "false_lesions_negative_slides": sum(r["lesions"] for r in neg),
        "false_lesions_all_slides": sum(r["false_lesions"] for r in rows),
        "negative_slides_called": {c: sum(r["category"] == c for r in neg) for c in CATEGORIES},
        "found": sum(r["found"] for r in rows),
        "true_lesions": sum(r["true_lesions"] for r in rows),
        "size_error_mm_mean": float(np.mean(errors)), "size_error_mm_max": float(np.max(errors)),
        "category_accuracy": float(np.mean([r["category"] == r["truth"] for r in rows])),
        "category_kappa": float(cohen_kappa_score(
            [r["truth"] for r in rows], [r["category"] for r in rows],
            labels=list(CATEGORIES), weights="quadratic")),
        "stage_kappa": float(cohen_kappa_score(stages_true, stages_pred, labels=list(STAGES),
                                               weights="quadratic")),
        "three_lesion_slides": [
            {"slide": r["slide"], "lesions": r["lesions"], "found": f"{r['found']}/3",
             "size_error_mm": round(r["size_error_mm"], 3)} for r in three],
    }  # fmt: skip


def settings(threshold: float, sweep: bool) -> dict[str, PostProcess]:
    named = {
        "raw": PostProcess.raw(threshold),
        "defaults": PostProcess.from_options(slide_options({}), threshold),
        "defaults without shuffles": PostProcess.from_options(
            slide_options({"lesion_shuffles": 0}), threshold
        ),
    }
    if sweep:
        sigmas = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0)
        seeds = (0.0, 0.6, 0.7, 0.8, 0.9, 0.95)
        for sigma, seed, tiles in product(sigmas, seeds, (1, 2, 3, 4, 8)):
            s = max(seed, threshold)
            named[f"sigma={sigma:g} seed={s:g} min={tiles}"] = PostProcess(
                sigma, s, threshold, tiles
            )
    return named


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("slides", type=Path, help="folder written by make_eval_slides.py")
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="work folder")
    ap.add_argument("--no-run", action="store_true", help="reuse OUT/slides from an earlier run")
    ap.add_argument("--tta", choices=["none", "d4"], help="slides' --tta (default: the model's)")
    ap.add_argument("--sweep", action="store_true", help="also a grid of settings")
    args = ap.parse_args()
    truth = json.loads((args.slides / "truth.json").read_text())
    timing = (
        {}
        if args.no_run
        else run_slides(args.slides, args.checkpoint, args.out / "slides", args.tta)
    )
    slides = load(args.out / "slides", truth)
    threshold = slides[0]["meta"]["threshold"]
    results: dict[str, Any] = {"checkpoint": str(args.checkpoint), "threshold": threshold,
                               "run": timing, "settings": {}}  # fmt: skip
    for name, post in settings(threshold, args.sweep).items():
        rows = [evaluate_slide(sl, post) for sl in slides]
        results["settings"][name] = {"post": post.describe(), **summarise(rows), "rows": rows}
    mismatch = [sl["truth"]["slide"] for sl, r in zip(slides, results["settings"]["defaults"]
                ["rows"]) if (sl["summary"]["lesions"], sl["summary"]["category"]) !=
                (r["lesions"], r["category"])]  # fmt: skip
    results["defaults_match_the_run"] = not mismatch
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "postprocess.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"threshold {threshold}; run {timing}; defaults as the run: {not mismatch} {mismatch}")
    for name, s in results["settings"].items():
        print(f"{name:28s} FROC {s['froc']:.3f} AUC peak {s['auc_peak']:.3f} max "
              f"{s['auc_max']:.3f} diam "
              f"{s['auc_diameter']:.3f} | FP lesions neg {s['false_lesions_negative_slides']:4d} "
              f"all {s['false_lesions_all_slides']:4d} | found {s['found']}/{s['true_lesions']} "
              f"| size err {s['size_error_mm_mean']:.2f}/{s['size_error_mm_max']:.2f} mm | cat "
              f"acc {s['category_accuracy']:.2f} kappa {s['category_kappa']:.2f} stage "
              f"{s['stage_kappa']:.2f} | neg called {s['negative_slides_called']}")  # fmt: skip


if __name__ == "__main__":
    main()
