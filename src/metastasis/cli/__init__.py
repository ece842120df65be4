"""The `metastasis` command: parse options, import lazily, call one API function.

Problems with data, options or checkpoints end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from metastasis.errors import MetastasisError

log = logging.getLogger("metastasis")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir", help="cache folder (default $METASTASIS_CACHE or ~/.cache/metastasis)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metastasis",
        description="Detect metastatic cancer in 96x96 H&E lymph-node patches (PCam / Kaggle).",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "check",
        help="integrity report of a data set",
        description="Counts per class and every problem found: missing or "
        "unlabelled files, duplicate ids, bad labels, unreadable, wrong-sized or "
        "non-RGB images, exact pixel duplicates.",
    )
    p.add_argument("data", help="Kaggle folder, PCam .h5 folder/file, or class folders 0/ 1/")
    p.add_argument("--split", help="check only this split")
    p.add_argument("--strict", action="store_true", help="exit 1 when anything is wrong")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    _add_common(p)

    p = sub.add_parser(
        "train",
        help="train a model; writes a run folder",
        description="Options override the --config YAML, which overrides defaults.",
    )
    p.add_argument("--config", metavar="FILE.yaml", help="recipe (see configs/)")
    p.add_argument("--data", help="training data")
    p.add_argument("--split", help="split of --data to train on (default: train)")
    p.add_argument("--val-data", help="validation data (default: stratified split of --data)")
    p.add_argument("--val-split", help="split of --val-data")
    p.add_argument("--val-fraction", type=float, help="fraction held out when no --val-data")
    p.add_argument("--model", help="registered model name (metastasis models)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"])
    p.add_argument("--augment", help="augmentation preset: none, flips")
    p.add_argument("--seed", type=int)
    p.add_argument("--accelerator", help="auto, cpu, cuda, mps")
    p.add_argument("--devices", type=int)
    p.add_argument("--precision", help="32-true, bf16-mixed, 16-mixed")
    p.add_argument("--num-workers", type=int, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--out", help="run folder (default runs/<timestamp>-<model>)")
    _add_common(p)

    for name, helptext in (
        ("evaluate", "metrics and plots of a checkpoint on labelled data"),
        ("predict", "predictions of a checkpoint as CSV"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
        p.add_argument("--data", required=True)
        p.add_argument("--split", help="split of --data")
        p.add_argument(
            "--out",
            required=True,
            help="output folder" if name == "evaluate" else "output CSV file",
        )
        p.add_argument("--batch-size", type=int, default=256)
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
        if name == "predict":
            p.add_argument(
                "--kaggle-submission",
                action="store_true",
                help="write Kaggle's id,label (probability) file for DATA/test",
            )
        _add_common(p)

    p = sub.add_parser(
        "synth",
        help="write the built-in synthetic data set",
        description="Synthetic H&E-like patches (not real tissue) for demos and "
        "tests; label 1 has tumour-like cells in the central 32x32.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--layout",
        choices=["demo", "folder", "kaggle", "pcam-h5"],
        default="demo",
        help="demo = train/ and valid/ class folders (default)",
    )
    p.add_argument("--n", type=int, default=2000, help="patches (training patches for demo)")
    p.add_argument("--n-valid", type=int, default=500, help="validation patches (demo)")
    p.add_argument("--seed", type=int, default=0)

    sub.add_parser("models", help="list registered models")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(COMMANDS[args.command](args) or 0)
    except MetastasisError as exc:
        print(f"metastasis {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"metastasis {args.command}: interrupted", file=sys.stderr)
        return 130


def _progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "no_progress", False)


def cmd_check(args: argparse.Namespace) -> int:
    from metastasis.data.checks import check_dataset
    from metastasis.io import atomic_write_json

    report = check_dataset(args.data, args.split, args.cache_dir, progress=_progress(args))
    print(report.format_text())
    if args.json:
        atomic_write_json(args.json, report.to_dict())
    return 1 if args.strict and not report.ok else 0


def cmd_train(args: argparse.Namespace) -> int:
    from metastasis.config import resolve_config
    from metastasis.engine.trainer import fit

    cfg = resolve_config(
        args.config,
        data=args.data,
        split=args.split,
        val_data=args.val_data,
        val_split=args.val_split,
        val_fraction=args.val_fraction,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        augment=args.augment,
        seed=args.seed,
        accelerator=args.accelerator,
        devices=args.devices,
        precision=args.precision,
        num_workers=args.num_workers,
        threads=args.threads,
        out=args.out,
        cache_dir=args.cache_dir,
    )
    result = fit(cfg, progress=_progress(args))
    val = result.metrics["val"]
    print(f"run folder: {result.run_dir}")
    print(f"report:     {result.run_dir / 'report.html'}")
    print(
        f"best epoch {result.best_epoch}: val ROC-AUC {val['roc_auc']:.4f}, "
        f"accuracy {val['accuracy']:.4f}"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from metastasis.inference.evaluate import evaluate_checkpoint

    m = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        args.out,
        args.split,
        args.batch_size,
        args.device,
        args.cache_dir,
        _progress(args),
    )
    keys = ("n", "accuracy", "roc_auc", "pr_auc", "sensitivity", "specificity", "f1")
    print(json.dumps({k: m[k] for k in keys}))
    print(f"report: {args.out}/report.html")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
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
        _progress(args),
    )
    print(f"wrote {len(table)} predictions to {args.out}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
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


def cmd_models(args: argparse.Namespace) -> int:
    from metastasis.models import describe_models

    for name, doc in describe_models().items():
        print(f"{name:24s} {doc}")
    return 0


COMMANDS = {
    "check": cmd_check,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "synth": cmd_synth,
    "models": cmd_models,
}
