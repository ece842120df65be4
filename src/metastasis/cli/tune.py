"""Hyper-parameter search (Optuna: grid, random or TPE sampling, pruning by validation ROC-AUC).

Every trial is a `metastasis train` run of the --config recipe (with these options) plus the
values the --space YAML gives it, written to STUDY_DIR/trials/<number>/. The study is kept in
--storage (default STUDY_DIR/journal.log; a SQLAlchemy URL such as postgresql://... lets
several machines share it): running the same command again resumes it, and the same command on
several machines, or --workers K here, runs trials in parallel. STUDY_DIR gets trials.csv,
best.yaml (`metastasis train --config best.yaml` re-runs the best trial), summary.json, plots
and report.html. Needs the hpo extra: pip install 'metastasis[hpo]'."""

from __future__ import annotations

import argparse
from pathlib import Path

from metastasis.cli.common import (
    add_data_options,
    add_training_options,
    progress,
    training_overrides,
)

ORDER = 25
HELP = "search hyper-parameters (Optuna); resumable and parallel"

TRIAL_FLAGS = (
    "data",
    "split",
    "val_data",
    "val_split",
    "val_fraction",
    "model",
    "epochs",
    "batch_size",
    "seed",
    "accelerator",
    "devices",
    "precision",
    "num_workers",
    "threads",
    "loggers",
    "tracking_uri",
    "experiment",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, metavar="SPACE.yaml", help="search space")
    p.add_argument("--config", metavar="BASE.yaml", help="recipe every trial starts from")
    p.add_argument("--sampler", choices=["grid", "random", "tpe"], default="tpe")
    p.add_argument(
        "--trials", type=int, help="trials in the study (grid: default and at most its size)"
    )
    p.add_argument("--study", help="study name (default: the space file's name)")
    p.add_argument("--out", help="study folder (default studies/<study>)")
    p.add_argument("--storage", help="SQLAlchemy URL or journal file (default STUDY/journal.log)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    p.add_argument("--pruner", choices=["none", "median", "halving", "hyperband"], default="median")
    p.add_argument("--search-seed", type=int, default=0, help="the sampler's seed")
    p.add_argument("--heartbeat", type=int, default=30, help="seconds between database heartbeats")
    p.add_argument("--max-retry", type=int, default=2, help="re-runs of a killed trial")
    p.add_argument(
        "--report-only", action="store_true", help="only write the study's outputs, no trials"
    )
    g = p.add_argument_group("training options for every trial (override --config)")
    add_training_options(g, TRIAL_FLAGS)
    add_data_options(p, training=True)


def run(args: argparse.Namespace) -> int:
    from metastasis.config import resolve_config
    from metastasis.errors import MetastasisError
    from metastasis.tune import TuneSettings, load_space, tune, write_study_report

    flags = training_overrides(args, TRIAL_FLAGS)
    base = resolve_config(args.config, **flags)
    space = load_space(args.space)
    # A flag the space also sets would be overridden silently by every trial: refuse instead.
    clash = sorted(k for k, v in flags.items() if v is not None and k in space.settings())
    if clash:
        given = ", ".join(f"--{k.replace('_', '-')} {flags[k]}" for k in clash)
        raise MetastasisError(
            f"{args.space}: the search space sets {', '.join(clash)}, which every trial would "
            f"use instead of {given}; remove the flag or the entry from the space"
        )
    name = args.study or Path(args.space).stem
    settings = TuneSettings(
        base=base,
        space=space,
        study_dir=Path(args.out or Path("studies") / name),
        study_name=name,
        sampler=args.sampler,
        trials=args.trials,
        storage=args.storage,
        workers=args.workers,
        pruner=args.pruner,
        seed=args.search_seed,
        heartbeat=args.heartbeat,
        max_retry=args.max_retry,
    )
    if args.report_only:
        result = write_study_report(settings)
    else:
        result = tune(settings, progress=progress(args))
    counts = ", ".join(f"{n} {state}" for state, n in result.counts.items() if n)
    print(f"study folder: {result.study_dir}  ({counts or 'no trials'})")
    if result.best_number is not None:
        print(f"best trial {result.best_number}: val ROC-AUC {result.best_value:.4f}")
        print(f"parameters: {result.best_params}")
        print(f"best config: {result.files['best']}")
    print(f"report:      {result.files['report']}")
    return 0
