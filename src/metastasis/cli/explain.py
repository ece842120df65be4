"""Grad-CAM explanations of a checkpoint on patches of a data set: per patch the patch, its
overlay (central 32x32 outlined), probability, label at the checkpoint's threshold and truth;
a grid PNG, one PNG per patch and explanations.csv."""

from __future__ import annotations

import argparse

from metastasis.cli.common import add_data_options, add_setting_flags, inference_values, progress
from metastasis.inference.options import InferenceOptions

ORDER = 45
HELP = "Grad-CAM explanations of a checkpoint on patches"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    p.add_argument("--data", required=True, help="Kaggle folder, PCam .h5 files or class folders")
    p.add_argument("--split", help="split of --data (default: test, else valid)")
    p.add_argument("--out", required=True, help="output folder")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--ids",
        nargs="+",
        metavar="ID",
        help="patch ids to explain (default: --n patches drawn at random)",
    )
    which.add_argument(
        "--n",
        type=int,
        default=16,
        help="patches drawn at random, half of each class when labelled (default 16)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random draw")
    p.add_argument("--alpha", type=float, default=0.4, help="weight of the heat map (0-1)")
    add_setting_flags(p, InferenceOptions, ("engine", "batch_size", "device", "threshold"))
    add_data_options(p)


def run(args: argparse.Namespace) -> int:
    from metastasis.inference.explain import explain_to_folder

    table = explain_to_folder(
        args.checkpoint,
        args.data,
        args.out,
        split=args.split,
        ids=args.ids,
        n=args.n,
        seed=args.seed,
        alpha=args.alpha,
        cache_dir=args.cache_dir,
        progress=progress(args),
        **{k: v for k, v in inference_values(args).items() if k != "tta"},
    )
    print(f"explained {len(table)} patches: {args.out}/grid.png, {args.out}/explanations.csv")
    return 0
