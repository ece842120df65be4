"""A slides run measured against lesion annotations, as CAMELYON16/17 measured: lesion FROC,
slide-level ROC-AUC and accuracy with bootstrap intervals over slides, pixel Dice/IoU, node
categories and pN stages with quadratic weighted kappa. Research use only: not a diagnosis."""

from __future__ import annotations

import argparse

from metastasis.cli.common import add_setting_flags, setting_values

NAME = "slides-eval"
ORDER = 46
HELP = "measure a slides run against annotations (FROC, slide AUC, Dice, kappa)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from metastasis.slides.evaluation_options import NAMES, EvalOptions

    p.add_argument("run", metavar="OUT", help="the --out folder of `metastasis slides`")
    p.add_argument("--annotations", required=True, metavar="DIR",
                   help="folder of <slide>.xml (ASAP/CAMELYON) or <slide>.geojson (QuPath) "
                   "files; a slide without one is negative")  # fmt: skip
    p.add_argument("--out", required=True, metavar="EVAL",
                   help="output folder (metrics.json, per_slide.csv, froc.csv, detections.csv, "
                   "report.html); not inside OUT or DIR")  # fmt: skip
    add_setting_flags(p, EvalOptions, NAMES)


def run(args: argparse.Namespace) -> int:
    from metastasis.slides.evaluation import evaluate_slides
    from metastasis.slides.evaluation_options import NAMES, eval_options

    m = evaluate_slides(
        args.run, args.annotations, args.out, eval_options(setting_values(args, NAMES))
    )
    froc, slide = m["froc"], m["slide_classification"]
    shown = {
        "slides": m["slides"]["evaluated"],
        "froc": froc["score"],
        "lesions": froc["lesions"],
        "slide_roc_auc": slide["roc_auc"],
        "slide_accuracy": slide["accuracy"],
        "dice": m["pixels"]["dice"],
        "kappa": (m.get("patients") or {}).get("kappa"),
    }
    print(", ".join(f"{k} {_text(v)}" for k, v in shown.items() if v is not None or k != "kappa"))
    print(f"report: {args.out}/report.html")
    return 0


def _text(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a" if value is None else str(value)
