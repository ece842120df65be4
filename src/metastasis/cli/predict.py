"""Predictions of a checkpoint as CSV (id, probability, label), or Kaggle's submission file."""

from __future__ import annotations

import argparse

from metastasis.cli.common import progress
from metastasis.cli.evaluate import add_checkpoint_options

ORDER = 40
HELP = "predictions of a checkpoint as CSV"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_checkpoint_options(
        p, "output CSV file", split_help="split of --data (default: test, else the only one)"
    )
    p.add_argument(
        "--kaggle-submission",
        action="store_true",
        help="write Kaggle's id,label (probability) file for DATA/test",
    )
    p.add_argument(
        "--fill-unreadable",
        type=float,
        metavar="P",
        help="with --kaggle-submission: write probability P for test images that cannot be "
        "read (default: stop and name them, since Kaggle rejects an incomplete file)",
    )


def run(args: argparse.Namespace) -> int:
    from metastasis.inference.predict import predict_to_csv

    table = predict_to_csv(
        args.checkpoint,
        args.data,
        args.out,
        args.split,
        args.kaggle_submission,
        args.batch_size,
        args.device,
        args.cache_dir,
        progress(args),
        args.tta,
        args.engine,
        args.fill_unreadable,
    )
    print(f"wrote {len(table)} predictions to {args.out}")
    return 0
