"""Predictions of a checkpoint as CSV (id, probability, prediction[, truth]), or Kaggle's
submission file (id, label)."""

from __future__ import annotations

import argparse

from metastasis.cli.common import add_checkpoint_options, checkpoint_options

ORDER = 40
HELP = "predictions of a checkpoint as CSV"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_checkpoint_options(
        p,
        "output CSV file: id, probability, prediction (and truth, for labelled data)",
        split_help="split of --data (default: test, else the only one)",
        data_help="Kaggle folder, PCam .h5 files, class folders, or one image file",
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
    from metastasis.inference.predict import is_image_file, predict_images, predict_to_csv

    if is_image_file(args.data) and not args.kaggle_submission:  # no pandas, maybe no PyTorch
        options = checkpoint_options(args)
        written = predict_images(
            args.checkpoint, [args.data], args.out,
            **{k: options[k] for k in ("batch_size", "device", "tta", "engine", "threshold")},
        )  # fmt: skip
        print(f"wrote {len(written)} predictions to {args.out}")
        return 0
    table = predict_to_csv(
        args.checkpoint,
        args.data,
        args.out,
        kaggle_submission=args.kaggle_submission,
        fill_unreadable=args.fill_unreadable,
        **checkpoint_options(args),
    )
    print(f"wrote {len(table)} predictions to {args.out}")
    return 0
