"""Metrics (accuracy, ROC-AUC, PR-AUC, sensitivity, specificity, F1, confusion matrix), plots,
predictions and an HTML report of a checkpoint on any labelled set."""

from __future__ import annotations

import argparse
import json

from metastasis.cli.common import add_checkpoint_options, checkpoint_options

ORDER = 30
HELP = "metrics and plots of a checkpoint on labelled data"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_checkpoint_options(p, "output folder")
    p.add_argument(
        "--gallery",
        type=int,
        default=8,
        metavar="N",
        help="error gallery: the N most confident false positives and false negatives with "
        "their Grad-CAM in the report (default 8; 0: none)",
    )


def run(args: argparse.Namespace) -> int:
    from metastasis.inference.evaluate import evaluate_checkpoint

    m = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        args.out,
        gallery=args.gallery,
        **checkpoint_options(args),
    )
    keys = ("n", "accuracy", "roc_auc", "pr_auc", "sensitivity", "specificity", "f1")
    print(json.dumps({k: m[k] for k in keys}))
    print(f"report: {args.out}/report.html")
    return 0
