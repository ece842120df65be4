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
    add_setting_flags,
    given_flags,
    progress,
    setting_values,
    training_config,
)

ORDER = 25
HELP = "search hyper-parameters (Optuna); resumable and parallel"

TRIAL_FLAGS = (
    "data",
    "split",
    "val_data",
    "val_split",
    "val_fraction",
    "exclude",
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
    p.add_argument(
        "--space",
        required=True,
        metavar="SPACE.yaml|NAME",
        help="search space: a YAML file, or the name of a shipped one (`metastasis recipes`)",
    )
    p.add_argument(
        "--config",
        metavar="BASE.yaml|NAME",
        help="recipe every trial starts from: a YAML file or a shipped recipe's name "
        "(default: none, the settings' defaults)",
    )
    from metastasis.config import TrainConfig
    from metastasis.tune.options import TuneOptions

    add_setting_flags(p, TuneOptions, list(TuneOptions.model_fields))
    p.add_argument(
        "--report-only", action="store_true", help="only write the study's outputs, no trials"
    )
    g = p.add_argument_group("training options for every trial (override --config)")
    add_setting_flags(g, TrainConfig, TRIAL_FLAGS)
    add_data_options(p, training=True)


def run(args: argparse.Namespace) -> int:
    from metastasis.config import SEARCH_SPACES, recipe_path
    from metastasis.errors import MetastasisError
    from metastasis.extras import TUNE, require, require_loggers
    from metastasis.settings import validated
    from metastasis.tune import TuneSettings, load_space, tune, write_study_report
    from metastasis.tune.options import TuneOptions

    require("hyper-parameter search", *TUNE)
    opts = validated(
        TuneOptions,
        {
            k: v
            for k, v in setting_values(args, list(TuneOptions.model_fields)).items()
            if v is not None
        },
        source="options",
    )
    flags = setting_values(args, TRIAL_FLAGS) | {"cache_dir": args.cache_dir}
    base = training_config(args.config, flags)
    require_loggers(base.loggers)
    space = load_space(recipe_path(args.space, SEARCH_SPACES))
    # A flag the space also sets would be overridden silently by every trial: refuse instead.
    clash = sorted(k for k, v in flags.items() if v is not None and k in space.settings())
    if clash:
        given = ", ".join(" ".join([*given_flags({k: flags[k]}), _shown(flags[k])]) for k in clash)
        raise MetastasisError(
            f"{args.space}: the search space sets {', '.join(clash)}, which every trial would "
            f"use instead of {given}; remove the flag or the entry from the space"
        )
    name = opts.study or Path(args.space).stem
    settings = TuneSettings(
        base=base,
        space=space,
        study_dir=Path(opts.out or Path("studies") / name),
        study_name=name,
        sampler=opts.sampler,
        trials=opts.trials,
        storage=opts.storage,
        workers=opts.workers,
        pruner=opts.pruner,
        seed=opts.search_seed,
        heartbeat=opts.heartbeat,
        max_retry=opts.max_retry,
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


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return str(value)
