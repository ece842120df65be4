"""The Optuna side of `metastasis tune`: storage, sampler, pruner and the study itself.

Importing this module needs Optuna (the ``hpo`` extra); without it the import ends with one
clear line.
"""

from __future__ import annotations

import inspect
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from metastasis.errors import MetastasisError, first_line
from metastasis.io import output_dir

try:
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler
    from optuna.trial import FrozenTrial, TrialState
except ImportError:  # pragma: no cover - exercised by the missing-extra test in a subprocess
    raise MetastasisError(
        "hyper-parameter search needs Optuna: pip install 'metastasis[hpo]'"
    ) from None

from metastasis.tune.liveness import RetryCallback
from metastasis.tune.options import PRUNERS, SAMPLERS  # declared there; re-exported
from metastasis.tune.space import SearchSpace

log = logging.getLogger(__name__)

META_KEY = "metastasis"  # study user attribute: what the study searches


def is_database(storage: str) -> bool:
    return "://" in storage


def display_storage(storage: str) -> str:
    """The storage as safe to print: a database password is hidden."""
    if not is_database(storage):
        return storage
    from sqlalchemy.engine import make_url

    try:
        return make_url(storage).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: show only its scheme
        return storage.split("://", 1)[0] + "://..."


def make_storage(
    storage: str, heartbeat: int = 30, max_retry: int | None = 2
) -> optuna.storages.BaseStorage:
    """A SQLAlchemy URL (several machines; Optuna's heartbeat fails trials of lost workers after
    ``4 * heartbeat`` seconds), or else a journal file path (several processes on one machine)."""
    if is_database(storage):
        rdb = optuna.storages.RDBStorage
        params = inspect.signature(rdb.__init__).parameters
        name = (
            "heartbeat_stale_trial_callback"
            if "heartbeat_stale_trial_callback" in params
            else "failed_trial_callback"
        )
        callback: dict[str, Any] = {name: RetryCallback(max_retry)}
        for attempt in range(3):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return rdb(
                        storage,
                        engine_kwargs={"pool_pre_ping": True},
                        heartbeat_interval=heartbeat,
                        grace_period=4 * heartbeat,
                        **callback,
                    )
            except ImportError as exc:  # the database driver
                raise MetastasisError(f"storage {display_storage(storage)}: {exc}") from None
            except Exception as exc:  # server down, bad credentials, tables created meanwhile
                from sqlalchemy.exc import OperationalError

                if attempt == 2 or isinstance(exc, OperationalError):
                    raise MetastasisError(
                        f"cannot open storage {display_storage(storage)}: {first_line(exc)}"
                    ) from None
                # Workers starting together on a new database race to create its tables.
                time.sleep(1 + attempt)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = Path(storage)
    output_dir(path.parent, "study folder")
    return JournalStorage(JournalFileBackend(str(path)))


def derived_seed(seed: int, number: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class PerTrialSeeded(BaseSampler):
    """Delegates each trial to a fresh sampler seeded by (seed, trial number).

    Workers started with the same seed would otherwise draw the same parameters; with this, each
    trial number (unique in a study) has its own stream, and a resumed study draws what an
    uninterrupted one would.
    """

    def __init__(self, make: Callable[[int], BaseSampler], seed: int) -> None:
        self._make = make
        self._seed = seed
        self._samplers: dict[int, BaseSampler] = {}

    def _for(self, trial: FrozenTrial) -> BaseSampler:
        if trial.number not in self._samplers:
            self._samplers = {trial.number: self._make(derived_seed(self._seed, trial.number))}
        return self._samplers[trial.number]

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._for(trial).after_trial(study, trial, state, values)
        self._samplers.pop(trial.number, None)


def make_sampler(name: str, space: SearchSpace, seed: int, trials: int) -> BaseSampler:
    if name == "grid":
        # The same seed in every worker gives the same grid order; trial k takes point k.
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if name == "random":
        return PerTrialSeeded(lambda s: optuna.samplers.RandomSampler(seed=s), seed)
    if name == "tpe":
        startup = max(2, min(10, trials // 2))

        def tpe(s: int) -> BaseSampler:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # constant_liar: running trials count as bad, so parallel workers spread out
                return optuna.samplers.TPESampler(
                    seed=s, n_startup_trials=startup, constant_liar=True
                )

        return PerTrialSeeded(tpe, seed)
    raise MetastasisError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")


def make_pruner(name: str, epochs: int | None) -> optuna.pruners.BasePruner:
    """``epochs`` is the trials' epoch count, or None when the space searches it."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs or "auto", reduction_factor=3
        )
    raise MetastasisError(f"unknown pruner {name!r}; known: {', '.join(PRUNERS)}")


def open_study(
    name: str,
    storage: optuna.storages.BaseStorage,
    sampler: BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    meta: dict[str, Any] | None = None,
) -> optuna.Study:
    """Create or resume study ``name``; refuse to resume one that searches something else."""
    sampler = sampler or optuna.samplers.RandomSampler()
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            direction="maximize",
            load_if_exists=True,  # another worker may create it at the same moment
        )
    if meta is not None:
        stored = study.user_attrs.get(META_KEY)
        if stored is None:
            study.set_user_attr(META_KEY, meta)
        elif stored != meta:
            changed = sorted(k for k in set(stored) | set(meta) if stored.get(k) != meta.get(k))
            raise MetastasisError(
                f"study {name!r} in this storage searches a different {' and '.join(changed)}; "
                "resume it with the same options or choose another --study"
            )
    return study


def load_existing_study(name: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    try:
        return optuna.load_study(
            study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler()
        )
    except KeyError:
        raise MetastasisError(f"no study named {name!r} in this storage") from None


def route_optuna_logs() -> None:
    """Optuna's messages go through the root logger (one format, ``--quiet`` applies)."""
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
