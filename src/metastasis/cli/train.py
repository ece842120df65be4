"""Train a model and write a run folder. Options override the --config YAML recipe, which
overrides the defaults (the seed's recipe)."""

from __future__ import annotations

import argparse
from pathlib import Path

from metastasis.cli.common import (
    TRAINING_FLAGS,
    add_data_options,
    add_training_options,
    progress,
    training_overrides,
)

ORDER = 20
HELP = "train a model; writes a run folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.yaml", help="recipe (see configs/)")
    add_training_options(p, list(TRAINING_FLAGS))
    p.add_argument("--out", help="run folder (default runs/<timestamp>-<model>)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a stopped run from its last completed epoch (takes no other options)",
    )
    add_data_options(p, training=True)


def run(args: argparse.Namespace) -> int:
    from metastasis.config import resolve_config
    from metastasis.engine.loggers import tracked_fit
    from metastasis.errors import MetastasisError

    overrides = training_overrides(args, list(TRAINING_FLAGS)) | {"out": args.out}
    if args.resume:
        given = sorted(k for k, v in overrides.items() if v is not None and k != "cache_dir")
        if given or args.config:
            raise MetastasisError(
                "--resume continues a run with its own config.yaml; drop "
                + ", ".join(f"--{k.replace('_', '-')}" for k in given or ["config"])
            )
        cfg = resolve_config(Path(args.resume) / "config.yaml", cache_dir=args.cache_dir)
        result = tracked_fit(cfg.replace(out=args.resume), progress=progress(args), resume=True)
    else:
        result = tracked_fit(resolve_config(args.config, **overrides), progress=progress(args))
    if not result.is_global_zero:  # DDP: rank 0 reports
        return 0
    val = result.metrics["val"]
    print(f"run folder: {result.run_dir}")
    print(f"report:     {result.run_dir / 'report.html'}")
    print(
        f"best epoch {result.best_epoch}: val ROC-AUC {val['roc_auc']:.4f}, "
        f"accuracy {val['accuracy']:.4f}"
    )
    return 0
