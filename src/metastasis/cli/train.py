"""Train a model and write a run folder. Options override the --config YAML recipe, which
overrides the defaults (the seed's recipe)."""

from __future__ import annotations

import argparse
from pathlib import Path

from metastasis.cli.common import add_data_options, progress

ORDER = 20
HELP = "train a model; writes a run folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
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
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a stopped run from its last completed epoch (takes no other options)",
    )
    add_data_options(p)


OVERRIDES = (
    "data",
    "split",
    "val_data",
    "val_split",
    "val_fraction",
    "model",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "optimizer",
    "augment",
    "seed",
    "accelerator",
    "devices",
    "precision",
    "num_workers",
    "threads",
    "out",
    "cache_dir",
)


def run(args: argparse.Namespace) -> int:
    from metastasis.config import resolve_config
    from metastasis.engine.trainer import fit
    from metastasis.errors import MetastasisError

    overrides = {k: getattr(args, k) for k in OVERRIDES}
    if args.resume:
        given = sorted(k for k, v in overrides.items() if v is not None and k != "cache_dir")
        if given or args.config:
            raise MetastasisError(
                "--resume continues a run with its own config.yaml; drop "
                + ", ".join(f"--{k.replace('_', '-')}" for k in given or ["config"])
            )
        cfg = resolve_config(Path(args.resume) / "config.yaml", cache_dir=args.cache_dir)
        result = fit(cfg.replace(out=args.resume), progress=progress(args), resume=True)
    else:
        result = fit(resolve_config(args.config, **overrides), progress=progress(args))
    val = result.metrics["val"]
    print(f"run folder: {result.run_dir}")
    print(f"report:     {result.run_dir / 'report.html'}")
    print(
        f"best epoch {result.best_epoch}: val ROC-AUC {val['roc_auc']:.4f}, "
        f"accuracy {val['accuracy']:.4f}"
    )
    return 0
