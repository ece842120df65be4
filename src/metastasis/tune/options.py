"""The study's own settings of `metastasis tune`, declared once (type, allowed values, default,
help) like the training settings in `metastasis.config`; the command's flags derive from them.

Each trial's training settings are a `TrainConfig` (the --config recipe plus the training flags
`tune` offers); these say how the study runs. Nothing here needs Optuna.
"""

from __future__ import annotations

from typing import Literal, get_args

from metastasis.settings import Settings, setting

Sampler = Literal["grid", "random", "tpe"]
Pruner = Literal["none", "median", "halving", "hyperband"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)
PRUNERS: tuple[str, ...] = get_args(Pruner)


class TuneOptions(Settings):
    """How a study runs: sampler, size, storage, workers, pruner."""

    sampler: Sampler = setting(
        "tpe", "how each trial's values are drawn: every grid point, at random, or TPE (Bayesian)"
    )
    trials: int | None = setting(
        None,
        "trials in the study, counting finished and running ones (grid: at most its size)",
        default_text="the grid's size; needed for random and tpe",
        metavar="N",
        ge=1,
    )
    study: str | None = setting(
        None, "study name", default_text="the space file's name", metavar="NAME"
    )
    out: str | None = setting(
        None, "study folder", default_text="studies/<study>", metavar="STUDY_DIR"
    )
    storage: str | None = setting(
        None,
        "SQLAlchemy URL (e.g. postgresql://..., shared by several machines) or journal file",
        default_text="STUDY_DIR/journal.log",
        metavar="URL",
    )
    workers: int = setting(1, "worker processes on this machine", metavar="K", ge=1)
    pruner: Pruner = setting(
        "median", "stops a trial early when its validation ROC-AUC falls behind the others'"
    )
    search_seed: int = setting(0, "the sampler's seed (each trial trains with --seed)")
    heartbeat: int = setting(
        30, "seconds between a database worker's heartbeats", metavar="SECONDS", ge=1
    )
    max_retry: int = setting(2, "re-runs of a trial whose worker died", ge=0)
