"""Metrics (accuracy, ROC-AUC, PR-AUC, sensitivity, specificity, F1, confusion matrix), plots,
predictions and an HTML report of a checkpoint on any labelled set."""

from __future__ import annotations

import argparse
import json
from typing import Any

from metastasis.cli.common import add_data_options, progress

# inference.runtime.ENGINES, spelled out so that parsing the command line imports no torch
ENGINES = ("auto", "onnxruntime", "torch", "torch-bf16")

ORDER = 30
HELP = "metrics and plots of a checkpoint on labelled data"


def add_checkpoint_options(
    p: argparse.ArgumentParser,
    out_help: str,
    split_help: str = "split of --data (default: test, else valid or val, else the only one)",
) -> None:
    from metastasis.config import TTA_MODES

    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    p.add_argument("--data", required=True, help="Kaggle folder, PCam .h5 files or class folders")
    p.add_argument("--split", help=split_help)
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--batch-size", type=int, default=256, help="patches per batch")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument(
        "--tta",
        choices=TTA_MODES,
        help="test-time augmentation: d4 averages the 8 rotations/flips (default: checkpoint's)",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="auto (default): ONNX Runtime on a CPU, PyTorch on a GPU, both float32 and checked "
        "against PyTorch; torch-bf16 is faster where the hardware has bfloat16, not exact",
    )
    add_data_options(p)


def checkpoint_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword options that ``add_checkpoint_options`` added, as the API takes them."""
    return {
        "split": args.split,
        "batch_size": args.batch_size,
        "device": args.device,
        "cache_dir": args.cache_dir,
        "progress": progress(args),
        "tta": args.tta,
        "engine": args.engine,
    }


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
