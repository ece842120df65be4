"""One checkpoint from several trained runs (other seeds or architectures taking the same
input): their probabilities averaged, wherever a checkpoint is used (predict, evaluate, slides,
serve, export). With --val-data, its decision threshold is chosen there and it and each member
are measured there; the cost per patch of the ensemble and of each member goes into
metrics.json."""

from __future__ import annotations

import argparse

from metastasis.cli.common import (
    add_cache_option,
    add_progress_option,
    add_setting_flags,
    inference_values,
    progress,
    setting_values,
)

ORDER = 27
HELP = "one checkpoint averaging several trained runs' probabilities"
RUN_FLAGS = ("engine", "batch_size", "device")  # of InferenceOptions: how the models run


def add_arguments(p: argparse.ArgumentParser) -> None:
    from metastasis.ensemble.options import NAMES, EnsembleOptions
    from metastasis.inference.options import InferenceOptions

    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders or checkpoint files")
    p.add_argument("--out", required=True, help="the ensemble's run folder (a new one)")
    p.add_argument(
        "--val-data",
        help="labelled patches to choose the threshold on and measure on (default: none; the "
        "threshold is then the mean of the members')",
    )
    p.add_argument("--split", help="split of --val-data (default: valid, val, test, the only one)")
    add_setting_flags(p, EnsembleOptions, NAMES)
    add_setting_flags(p, InferenceOptions, RUN_FLAGS)
    add_cache_option(p)
    add_progress_option(p)


def run(args: argparse.Namespace) -> int:
    import json

    from metastasis.ensemble import build_ensemble
    from metastasis.ensemble.options import NAMES, ensemble_options

    how = inference_values(args)
    result = build_ensemble(
        args.runs,
        args.out,
        args.val_data,
        options=ensemble_options(setting_values(args, NAMES)),
        split=args.split,
        cache_dir=args.cache_dir,
        progress=progress(args),
        **{k: how[k] for k in RUN_FLAGS},
    )
    m = result.metrics
    shown = {"threshold": result.bundle.threshold, **m["checkpoint"], **m["cost"]}
    if "val" in m:
        shown["roc_auc"] = m["val"]["roc_auc"]
        shown["members_roc_auc"] = [x["val"]["roc_auc"] for x in m["members"]]
    print(json.dumps({k: v for k, v in shown.items() if k != "how"}))
    print(f"wrote {result.run_dir}")
    return 0
