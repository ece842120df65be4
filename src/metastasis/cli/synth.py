"""Synthetic H&E-like patches (not real tissue) for demos and tests: label 1 has tumour-like
cells in the central 32x32."""

from __future__ import annotations

import argparse

ORDER = 90
HELP = "write the built-in synthetic data set"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--layout",
        choices=["demo", "folder", "kaggle", "pcam-h5"],
        default="demo",
        help="demo = train/ and valid/ class folders (default)",
    )
    p.add_argument("--n", type=int, default=2000, help="patches (training patches for demo)")
    p.add_argument("--n-valid", type=int, default=500, help="validation/test patches")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic images")


def run(args: argparse.Namespace) -> int:
    from metastasis.data import synthetic

    if args.layout == "demo":
        path = synthetic.write_demo_dataset(
            args.out, n_train=args.n, n_valid=args.n_valid, seed=args.seed
        )
    elif args.layout == "folder":
        path = synthetic.write_folder_dataset(args.out, args.n, seed=args.seed)
    elif args.layout == "kaggle":
        path = synthetic.write_kaggle_dataset(args.out, args.n, n_test=args.n_valid, seed=args.seed)
    else:
        for split, n in (("train", args.n), ("valid", args.n_valid)):
            synthetic.write_pcam_h5(args.out, split, n, seed=args.seed)
        path = args.out
    print(f"synthetic data ({args.layout}) in {path}")
    return 0
