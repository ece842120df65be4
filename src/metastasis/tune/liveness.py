"""Which running trials belong to a dead worker, and what happens to them.

A worker killed mid-trial (SIGKILL, out of memory, a lost machine) cannot mark its trial failed;
the trial would stay RUNNING for ever. Two mechanisms find such trials:

* the same machine: every trial records its worker's host, boot id, process id and process start
  time; a worker (and a resumed command) marks RUNNING trials of dead local processes FAILED at
  once. This covers the journal file, which Optuna gives no heartbeat;
* other machines (a database): Optuna's heartbeat (``RDBStorage(heartbeat_interval=...)``), which
  fails trials whose worker stopped beating for ``grace_period`` seconds.

The machine's name is its host name, or ``$METASTASIS_WORKER_HOST`` where machines (containers)
that share one storage also share a host name.

Either way the failed trial's parameters are queued again (``retry``) so the study still
evaluates them, at most ``max_retry`` times.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

WORKER_ATTRS = ("host", "boot_id", "pid", "pid_start")


def worker_identity() -> dict[str, Any]:
    """Who is running a trial: stored in the trial's user attributes."""
    pid = os.getpid()
    return {
        "host": os.environ.get("METASTASIS_WORKER_HOST") or socket.gethostname(),
        "boot_id": _boot_id(),
        "pid": pid,
        "pid_start": _process_start(pid),
    }


def is_dead_local_worker(attrs: dict[str, Any], me: dict[str, Any] | None = None) -> bool:
    """True when ``attrs`` name a worker on this machine that is certainly no longer running.

    Trials of other machines are never judged here (that is the heartbeat's job), nor trials of
    this very process.
    """
    me = me or worker_identity()
    if attrs.get("host") != me["host"] or "pid" not in attrs:
        return False
    if attrs.get("boot_id") and me["boot_id"] and attrs["boot_id"] != me["boot_id"]:
        return True  # recorded before this machine rebooted
    pid = int(attrs["pid"])
    if pid == me["pid"]:
        return False
    if not _alive(pid):
        return True
    start = attrs.get("pid_start")
    return start is not None and _process_start(pid) not in (None, start)  # pid reused


def retry(study: optuna.Study, trial: FrozenTrial, max_retry: int | None) -> bool:
    """Queue ``trial``'s parameters again as a WAITING trial, unless the same original trial
    was already retried ``max_retry`` times."""
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if max_retry is not None and len(history) > max_retry:
        log.warning("trial %d failed; not retried (already %d retries)", trial.number, max_retry)
        return False
    user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in WORKER_ATTRS}
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=user_attrs,
            system_attrs={
                **trial.system_attrs,
                "failed_trial": history[0],
                "retry_history": history,
            },
        )
    )
    log.warning("trial %d: its worker died; its parameters are queued again", trial.number)
    return True


class RetryCallback:
    """``RDBStorage``'s heartbeat-stale trial callback: retry the trial (picklable)."""

    def __init__(self, max_retry: int | None) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        retry(study, trial, self.max_retry)


def reap_dead_trials(study: optuna.Study, max_retry: int | None) -> list[int]:
    """Mark RUNNING trials of dead workers FAILED and retry them; their numbers.

    Local workers are checked by process; with a heartbeat (database storage), Optuna's
    ``fail_stale_trials`` also fails trials of silent workers elsewhere (and retries them
    through the storage's callback).

    Several workers may reap at once: only the one whose FAIL is stored first retries.
    ``study`` should carry a sampler without side effects in ``after_trial`` (see
    ``study.load_existing_study``): telling a trial runs the sampler's hooks.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import fail_stale_trials

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fail_stale_trials(study)  # a no-op without a heartbeat
    me = worker_identity()
    reaped = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_dead_local_worker(trial.user_attrs, me):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, UpdateFinishedTrialError):
            continue  # another worker got there first
        reaped.append(trial.number)
        log.warning(
            "trial %d was left running by dead process %s; marked failed",
            trial.number,
            trial.user_attrs.get("pid"),
        )
        retry(study, trial, max_retry)
    return reaped


def may_still_finish(trial: FrozenTrial, heartbeat: bool, me: dict[str, Any]) -> bool:
    """Whether a RUNNING trial is worth waiting for: its local process is alive, or a heartbeat
    will fail it if its remote worker is gone (without one, a remote trial cannot be judged)."""
    if trial.user_attrs.get("host") == me["host"]:
        return not is_dead_local_worker(trial.user_attrs, me)
    return heartbeat


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    stat = _stat_fields(pid)
    return stat is None or stat[0] not in ("Z", "X")  # a zombie has finished


def _process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks after boot (Linux), to tell a reused pid."""
    stat = _stat_fields(pid)
    return int(stat[19]) if stat is not None and len(stat) > 19 else None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first); None off Linux."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
