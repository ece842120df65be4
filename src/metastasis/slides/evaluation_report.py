"""The files of ``slides-eval``, each written atomically into ``--out``: ``metrics.json``,
``per_slide.csv``, ``froc.csv``, ``detections.csv``, ``froc.png`` (``plot_froc``: arrays in, a
Figure out) and ``report.html`` (the template ``slides_eval.html``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from metastasis.io import atomic_path, atomic_write_json, check_outputs, output_dir
from metastasis.metrics.froc import FROC_FPS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from metastasis.slides.evaluation import SlidesEvaluation
    from metastasis.slides.evaluation_options import EvalOptions

FILES = ("metrics.json", "per_slide.csv", "froc.csv", "detections.csv", "froc.png", "report.html")
NOTICE = (
    "Research use only: these measurements compare a patch classifier's maps with annotations; "
    "they are not a diagnosis."
)
# per_slide.csv's columns as a person reads them, with units
HEADINGS = {
    "slide": "slide",
    "annotation": "annotation file",
    "truth": "tumour (truth, 1 = yes)",
    "slide_score": "slide score",
    "predicted": "tumour (called, 1 = yes)",
    "lesions": "lesions (truth)",
    "itc_lesions": "of which ITC",
    "lesions_hit": "lesions found",
    "detections": "detections",
    "false_positives": "false-positive detections",
    "truth_largest_mm": "largest lesion, truth (mm)",
    "predicted_largest_mm": "largest lesion, called (mm)",
    "truth_category": "category (truth)",
    "predicted_category": "category (called)",
    "dice": "Dice (tiles)",
    "notes": "notes",
}


LEFT = 0.1  # the FROC figure's left edge: average false positives per slide

PROTOCOL_NAMES = {
    "froc": "Lesion detection (FROC)",
    "slide_classification": "Slide classification (ROC-AUC, accuracy)",
    "pixels": "Pixels (Dice, IoU)",
    "categories": "Node categories",
    "patients": "Patients (pN stage, kappa)",
}


def check_eval_outputs(out: Path, run: Path, annotations: Path, opts: EvalOptions) -> None:
    """Refuse, before anything is read or written, an ``out`` that is, holds or lies inside
    the run or the annotations, or that cannot be written."""
    inputs: list[Path] = [run, annotations]
    inputs += [Path(p) for p in (opts.labels, opts.stages, opts.patients) if p is not None]
    check_outputs(files=[out / f for f in FILES], owned=[out], inputs=inputs)


def plot_froc(
    fps: np.ndarray,
    sensitivity: np.ndarray,
    points: list[float] | None = None,
    score: float | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The FROC curve (sensitivity against average false positives per slide, log x axis), with
    the sensitivities at CAMELYON16's six points marked where given."""
    from metastasis.metrics.plots import figure_and_axes

    fig, ax = figure_and_axes(ax, figsize=(5.5, 4.0))
    x = np.asarray(fps, np.float64)[::-1]
    y = np.asarray(sensitivity, np.float64)[::-1]
    # the curve's points joined by straight lines, as np.interp reads them; the point at 0
    # false positives drawn at the axis' left edge (a log axis has no 0)
    ax.plot(np.clip(x, LEFT, None), y, "-", color="#b2182b", lw=1.5, label="FROC curve")
    if points is not None:
        ax.plot(FROC_FPS, points, "o", color="#2166ac",
                label="the six CAMELYON16 points" + (f" (mean {score:.3f})" if score is not None
                                                     else ""))  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlim(LEFT, max(16.0, float(x.max()) * 1.1 if len(x) else 16.0))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("average false positives per slide (log scale)")
    ax.set_ylabel("lesion sensitivity (ITC excluded)")
    ax.set_title("Lesion detection (FROC)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return fig


def write_evaluation(result: SlidesEvaluation, out: Path) -> Path:
    """Write every file of an evaluation into ``out`` (``metrics.json`` last but one, the
    report last); returns the report's path."""
    from metastasis.reports.figures import save_figure

    output_dir(out)
    for name, frame in (("per_slide.csv", result.per_slide), ("froc.csv", result.froc),
                        ("detections.csv", result.detections)):  # fmt: skip
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
    froc = result.metrics["froc"]
    points = froc.get("sensitivity_at_fps")
    fig = plot_froc(result.froc["fps_per_slide"].to_numpy(), result.froc["sensitivity"].to_numpy(),
                    list(points.values()) if points else None, froc.get("score"))  # fmt: skip
    save_figure(fig, out / "froc.png")
    atomic_write_json(out / "metrics.json", result.metrics)
    return write_report(result, out)


def _rows(frame: pd.DataFrame) -> list[list[Any]]:
    from metastasis.reports.html import frame_table

    return frame_table(frame)[1]


def write_report(result: SlidesEvaluation, out: Path) -> Path:
    from metastasis.reports.html import write_page

    m = result.metrics
    shown = result.per_slide.reindex(columns=list(HEADINGS))
    confusion = result.confusion.reset_index(names="truth \\ called")
    context = {
        "title": "Slides measured against annotations",
        "notice": NOTICE,
        "summary": _summary_rows(m),
        "protocols": [(PROTOCOL_NAMES[k], m[k]["protocol"]) for k in PROTOCOL_NAMES if m.get(k)],
        "froc_figure": {
            "file": "froc.png",
            "caption": "FROC curve: lesion sensitivity (ITC "
            "lesions excluded) against the average number of false-positive "
            "detections per slide; dots: CAMELYON16's six operating points.",
        },
        "slide_columns": [HEADINGS[c] for c in shown.columns],
        "slide_rows": _rows(shown),
        "confusion_columns": [str(c) for c in confusion.columns],
        "confusion_rows": _rows(confusion),
        "patient_columns": ["patient", "slides", "pN stage (truth)", "pN stage (called)"],
        "patient_rows": _rows(result.patients) if result.patients is not None else None,
        "notes": [*result.notes, *m["froc"].get("notes", [])],
    }
    return write_page(out / "report.html", "slides_eval.html", **context)


def _ci(block: dict[str, Any], name: str) -> str:
    value, ci = block.get(name), block.get(f"{name}_ci") or {}
    if value is None:
        return "n/a"
    if ci.get("low") is None:
        return f"{value:.3f}"
    return f"{value:.3f} (95% CI {ci['low']:.3f} to {ci['high']:.3f})"


def _summary_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    froc, slide, pix, cat = m["froc"], m["slide_classification"], m["pixels"], m["categories"]
    rows = [
        ("slides evaluated (tumour / normal)",
         f"{m['slides']['evaluated']} ({m['slides']['tumour']} / {m['slides']['normal']})"),
        ("FROC score (CAMELYON16, ITC excluded)", _ci(froc, "score")),
        ("lesions counted / ITC lesions left out", f"{froc['lesions']} / {froc['itc_lesions']}"),
        ("detections / false positives", f"{froc['detections']} / {froc['false_positives']}"),
        ("slide ROC-AUC", _ci(slide, "roc_auc")),
        ("slide accuracy at the slide threshold", _ci(slide, "accuracy")),
        ("pixel Dice / IoU (tiles within tissue)",
         " / ".join("n/a" if pix[k] is None else f"{pix[k]:.3f}" for k in ("dice", "iou"))),
        ("category accuracy (negative / ITC / micro / macro)", f"{cat['accuracy']:.3f}"),
    ]  # fmt: skip
    if m.get("patients"):
        p = m["patients"]
        kappa = "n/a" if p["kappa"] is None else f"{p['kappa']:.3f}"
        rows.append(("pN stage quadratic weighted kappa (patients scored)",
                     f"{kappa} ({p['scored']} of {p['patients']})"))  # fmt: skip
    return rows
