"""`metastasis tune`: an Optuna study whose trials are ordinary training runs.

Each trial is ``train(cfg)``, the code path of `metastasis train`, writing a complete run folder
``STUDY_DIR/trials/<number>/``; it reports the validation ROC-AUC after every epoch so the pruner
can stop it early. With ``loggers`` asking for MLflow, each trial is one run of one MLflow
experiment (the study's name unless ``experiment`` is set; see ``engine/loggers.py``).
The study lives in its storage (a journal file by default, or a database), so re-running the
same command resumes it, and any number of worker processes, here (``workers=K``) or on other
machines, share it.

``trials`` counts trials that finished (complete or pruned) or are running; failed ones are not
counted, so they are made up for. Before a worker starts a trial it checks that count, and a
trial that finds the target already reached by others ends at once as a failed "surplus" trial
(a race of a few milliseconds between workers), so a study never runs more than it was asked.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metastasis.config import TrainConfig
from metastasis.errors import MetastasisError
from metastasis.io import output_dir
from metastasis.training import prepare_tracking
from metastasis.tune.result import TuneResult
from metastasis.tune.space import SearchSpace, apply_params

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

JOURNAL = "journal.log"
MAX_FAILURES_IN_A_ROW = 3


@dataclass(frozen=True)
class TuneSettings:
    base: TrainConfig  # every trial starts from this (defaults -> YAML -> flags)
    space: SearchSpace  # ... and sets these (fixed values, then the trial's parameters)
    study_dir: Path
    study_name: str
    sampler: str = "tpe"  # grid | random | tpe
    trials: int | None = None  # wanted trials; grid: at most (and by default) the grid's size
    storage: str | None = None  # SQLAlchemy URL, or a journal file (default STUDY_DIR/journal.log)
    workers: int = 1  # worker processes on this machine
    pruner: str = "median"  # none | median | halving | hyperband
    seed: int = 0  # the sampler's seed (each trial trains with base.seed)
    heartbeat: int = 30  # seconds (database storage only)
    max_retry: int = 2  # re-runs of a trial whose worker died

    @property
    def storage_url(self) -> str:
        return self.storage or str(self.study_dir / JOURNAL)

    def target(self) -> int:
        if self.sampler == "grid":
            size = len(self.space.grid_points())
            return min(self.trials, size) if self.trials else size
        if not self.trials:
            raise MetastasisError(f"--trials N is needed for the {self.sampler} sampler")
        return self.trials

    def meta(self) -> dict[str, Any]:
        return {"sampler": self.sampler, "space": self.space.to_dict()}


class SurplusTrial(Exception):
    """The study already had its trials when this one started; it ends at once."""


def tune(settings: TuneSettings, progress: bool = True) -> TuneResult:
    """Run (or resume) the study with ``settings.workers`` processes, then write its reports."""
    from metastasis.tune import study as st
    from metastasis.tune.liveness import reap_dead_trials

    settings = _checked(settings)
    st.route_optuna_logs()
    output_dir(settings.study_dir, "study folder")
    _open_data_once(settings.base, progress)
    prepare_tracking(settings.base, experiment=_experiment(settings), store_dir=settings.study_dir)
    log.info(
        "study %r (%s sampler, %d trials, %d worker(s)) in %s; storage %s",
        settings.study_name,
        settings.sampler,
        settings.target(),
        settings.workers,
        settings.study_dir,
        st.display_storage(settings.storage_url),
    )
    storage = st.make_storage(settings.storage_url, settings.heartbeat, settings.max_retry)
    st.open_study(settings.study_name, storage, meta=settings.meta())  # created once, here
    reap_dead_trials(st.load_existing_study(settings.study_name, storage), settings.max_retry)
    if settings.workers == 1:
        run_worker(settings)
    else:
        _run_processes(settings)
    return write_study_report(settings)


def write_study_report(settings: TuneSettings) -> TuneResult:
    """Write the trials table, best config, plots and report of the study as stored now."""
    from metastasis.tune import study as st
    from metastasis.tune.report import write_report

    storage = st.make_storage(settings.storage_url, settings.heartbeat, settings.max_retry)
    study = st.load_existing_study(settings.study_name, storage)
    return write_report(study, settings.study_dir, settings.sampler)


def run_worker(settings: TuneSettings, worker: int = 0) -> None:
    """One worker: run trials until the study has its ``target`` (shared with all workers)."""
    from metastasis.tune import study as st
    from metastasis.tune.liveness import may_still_finish, reap_dead_trials, worker_identity

    grid = settings.sampler == "grid"
    target = settings.target()
    storage = st.make_storage(settings.storage_url, settings.heartbeat, settings.max_retry)
    sampler = st.make_sampler(settings.sampler, settings.space, settings.seed, target)
    epochs = None if "epochs" in settings.space.names else settings.base.epochs
    pruner = st.make_pruner(settings.pruner, epochs)
    study = st.open_study(settings.study_name, storage, sampler, pruner, settings.meta())
    quiet = st.load_existing_study(settings.study_name, storage)  # for telling others' trials

    def objective(trial: optuna.Trial) -> float:
        return _objective(trial, settings, grid, target)

    heartbeat = st.is_database(settings.storage_url)
    poll = min(settings.heartbeat, 5)
    failures = 0
    while True:
        reap_dead_trials(quiet, settings.max_retry)
        trials = study.get_trials(deepcopy=False)
        if _is_done(trials, grid, target):
            # Stay while trials of other workers run: if one dies, its retry is run here.
            me = worker_identity()
            if any(
                t.state.name == "RUNNING" and may_still_finish(t, heartbeat, me) for t in trials
            ):
                time.sleep(poll)
                continue
            break
        study.optimize(objective, n_trials=1, catch=(SurplusTrial,), gc_after_trial=True)
        last = _last_own_trial(study)
        if last is None or last.state.name != "FAIL" or last.user_attrs.get("surplus"):
            failures = 0
            continue
        failures += 1
        if failures >= MAX_FAILURES_IN_A_ROW:
            raise MetastasisError(
                f"worker {worker}: {failures} trials in a row failed (last: trial {last.number}); "
                "see the messages above"
            )


def _objective(trial: optuna.Trial, settings: TuneSettings, grid: bool, target: int) -> float:
    import optuna

    from metastasis.training import train
    from metastasis.tune.liveness import worker_identity

    for key, value in worker_identity().items():
        trial.set_user_attr(key, value)
    earlier = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
    if _covered(earlier, grid) >= target:
        trial.set_user_attr("surplus", True)
        raise SurplusTrial(f"trial {trial.number}: the study already has {target} trials")
    values = settings.space.suggest(trial, grid=grid)
    run_dir = settings.study_dir / "trials" / str(trial.number)
    cfg = apply_params(settings.base, {**settings.space.fixed, **values}, "trial settings")
    cfg = cfg.replace(out=str(run_dir))
    trial.set_user_attr("config", {k: v for k, v in cfg.to_dict().items() if k != "out"})
    trial.set_user_attr("run_dir", str(run_dir))

    def report(epoch: int, row: dict[str, Any]) -> None:
        auc = float(row["val_roc_auc"])
        if math.isnan(auc):
            return
        trial.report(auc, epoch)
        if epoch < cfg.epochs and trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} (val ROC-AUC {auc:.4f})")

    # Each trial is one run of the study's MLflow experiment (and a TensorBoard folder in its run).
    tracking = {
        "experiment": _experiment(settings),
        "run_name": f"{settings.study_name} trial {trial.number}",
        "tags": {"optuna.study": settings.study_name, "optuna.trial": str(trial.number)}
        | {"optuna.searched": ",".join(values)},
        "store_dir": settings.study_dir,
        "killed_on": (optuna.TrialPruned,),
    }
    result = train(cfg, progress=False, on_epoch_end=report, tracking=tracking)
    trial.set_user_attr("best_epoch", result.best_epoch)
    auc = result.metrics["val"].get("roc_auc")
    return float("nan") if auc is None else float(auc)


def _experiment(settings: TuneSettings) -> str:
    """The MLflow experiment of the study's trials: --experiment, else the study's name."""
    given = settings.base.experiment
    return given if given != TrainConfig().experiment else settings.study_name


def _covered(trials: list[optuna.trial.FrozenTrial], grid: bool) -> int:
    """Trials that count towards the target: complete, pruned or running. With the grid sampler,
    distinct grid points (a duplicate evaluation does not count twice)."""
    keys = {
        t.system_attrs.get("grid_id", t.number) if grid else t.number
        for t in trials
        if t.state.name in ("COMPLETE", "PRUNED", "RUNNING") and not t.user_attrs.get("surplus")
    }
    return len(keys)


def _is_done(trials: list[optuna.trial.FrozenTrial], grid: bool, target: int) -> bool:
    if _covered(trials, grid) >= target:
        return True
    if not grid or any(t.state.name == "WAITING" for t in trials):
        return False
    # Grid points whose every attempt failed are not attempted again (that would repeat them).
    attempted = {t.system_attrs["grid_id"] for t in trials if "grid_id" in t.system_attrs}
    return len(attempted) >= target and not any(t.state.name == "RUNNING" for t in trials)


def _last_own_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    pid = os.getpid()
    own = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("pid") == pid]
    return own[-1] if own else None


def _checked(settings: TuneSettings) -> TuneSettings:
    from metastasis.tune.study import PRUNERS, SAMPLERS

    if settings.sampler not in SAMPLERS:
        raise MetastasisError(f"unknown sampler {settings.sampler!r}; known: {', '.join(SAMPLERS)}")
    if settings.pruner not in PRUNERS:
        raise MetastasisError(f"unknown pruner {settings.pruner!r}; known: {', '.join(PRUNERS)}")
    if settings.trials is not None and settings.trials < 1:
        raise MetastasisError("--trials must be at least 1")
    if settings.workers < 1 or settings.heartbeat < 1:
        raise MetastasisError("--workers and --heartbeat must be at least 1")
    if settings.base.data is None:
        raise MetastasisError("no training data: pass --data DIR or set `data:` in the config")
    settings.target()  # raises when --trials is missing
    if settings.workers > 1 and settings.base.threads is None:
        # Training is CPU bound: share the cores instead of oversubscribing them.
        threads = max(1, (os.cpu_count() or 1) // settings.workers)
        settings = _replace(settings, base=settings.base.replace(threads=threads))
    return settings


def _replace(settings: TuneSettings, **changes: Any) -> TuneSettings:
    import dataclasses

    return dataclasses.replace(settings, **changes)


def _open_data_once(base: TrainConfig, progress: bool) -> None:
    """Build the data caches before workers start (each would otherwise decode them)."""
    from metastasis.data.cache import open_split
    from metastasis.data.splits import TRAIN_SPLITS, VAL_SPLITS

    root = Path(base.cache_dir) if base.cache_dir else None
    open_split(str(base.data), base.split, TRAIN_SPLITS, root, progress)
    if base.val_data:
        open_split(base.val_data, base.val_split, VAL_SPLITS, root, progress)


def _run_processes(settings: TuneSettings) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # fork + torch threads can deadlock
    level = logging.getLogger().getEffectiveLevel()
    procs = [
        ctx.Process(
            target=_worker_main, args=(settings, i, level, os.getpid()), name=f"tune-worker-{i}"
        )
        for i in range(settings.workers)
    ]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    except BaseException:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join()
        raise
    bad = [f"worker {i} (exit status {p.exitcode})" for i, p in enumerate(procs) if p.exitcode]
    if bad:
        raise MetastasisError(f"{', '.join(bad)} stopped with an error; see the messages above")


def _worker_main(settings: TuneSettings, worker: int, level: int, parent: int) -> None:
    """Entry point of a worker process; it dies with the process that started it."""
    import sys

    from metastasis.tune import study as st
    from metastasis.workers import die_with_parent

    die_with_parent(parent)

    logging.basicConfig(
        level=level, format=f"%(levelname)s [worker {worker}] %(message)s", stream=sys.stderr
    )
    st.route_optuna_logs()
    try:
        run_worker(settings, worker)
    except MetastasisError as exc:
        log.error("%s", exc)
        sys.exit(2)
