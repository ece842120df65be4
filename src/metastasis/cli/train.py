"""Train a model and write a run folder. Options override the --config YAML recipe, which
overrides the defaults (the seed's recipe); every option is a setting of the recipe (its name
with `_` for `-`), and the resolved recipe is saved as RUN/config.yaml."""

from __future__ import annotations

import argparse
from pathlib import Path

from metastasis.cli.common import (
    add_progress_option,
    add_setting_flags,
    given_flags,
    progress,
    setting_values,
    training_config,
)

ORDER = 20
HELP = "train a model; writes a run folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from metastasis.config import TrainConfig

    p.add_argument(
        "--config",
        metavar="FILE.yaml|NAME",
        help="recipe: a YAML file, or the name of a shipped one such as fast-cpu (`metastasis "
        "recipes` lists them; default: none, the settings' defaults)",
    )
    add_setting_flags(p, TrainConfig, list(TrainConfig.model_fields))
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a stopped run from its last completed epoch (takes no other options "
        "but --cache-dir; default: a new run)",
    )
    add_progress_option(p, "training logs each tenth of an epoch with its speed instead")


def run(args: argparse.Namespace) -> int:
    from metastasis.config import TrainConfig, resolve_config
    from metastasis.data.synthetic import SYNTHETIC_WARNING, is_synthetic
    from metastasis.errors import MetastasisError
    from metastasis.extras import require_loggers
    from metastasis.training import train

    overrides = setting_values(args, list(TrainConfig.model_fields))
    if args.resume:
        given = given_flags({k: v for k, v in overrides.items() if k != "cache_dir"})
        if given or args.config:
            raise MetastasisError(
                "--resume continues a run with its own config.yaml; drop "
                + ", ".join(given or ["--config"])
            )
        cfg = resolve_config(Path(args.resume) / "config.yaml", cache_dir=args.cache_dir)
        require_loggers(cfg.loggers)
        result = train(cfg.replace(out=args.resume), progress=progress(args), resume=True)
    else:
        cfg = training_config(args.config, overrides)
        require_loggers(cfg.loggers)
        result = train(cfg, progress=progress(args))
    if not result.is_global_zero:  # DDP: rank 0 reports
        return 0
    val = result.metrics["val"]
    print(f"run folder: {result.run_dir}")
    print(f"report:     {result.run_dir / 'report.html'}")
    swa = result.metrics.get("swa")
    kept = f"SWA of epochs {swa['epochs'][0]}-{swa['epochs'][1]}" if swa else "best epoch"
    kept = kept if swa else f"{kept} {result.best_epoch}"
    print(f"{kept}: validation ROC-AUC {val['roc_auc']:.4f}, accuracy {val['accuracy']:.4f}")
    if cfg.data is not None and is_synthetic(cfg.data):
        print(f"note:       the model was {SYNTHETIC_WARNING}")
    return 0
