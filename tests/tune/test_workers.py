"""Several worker processes on one study: a journal file here, PostgreSQL below; and a worker
killed with SIGKILL in the middle of a trial."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

optuna = pytest.importorskip("optuna", reason="the hpo extra (optuna) is not installed")

from metastasis.tune.study import make_storage  # noqa: E402

Command = Callable[..., list[str]]


def write_space(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def study_trials(storage: str, name: str) -> list[Any]:
    return optuna.load_study(study_name=name, storage=make_storage(storage)).get_trials()


def run_ok(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def assert_distinct_complete(trials: list[Any], n: int) -> None:
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(done) == n, [(t.number, t.state.name) for t in trials]
    assert len({tuple(sorted(t.params.items())) for t in done}) == n
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]


def test_two_workers_on_a_journal_file_visit_exactly_the_grid(
    tmp_path: Path, tune_command: Command
) -> None:
    space = write_space(tmp_path / "grid.yaml", "lr: [0.001, 0.003]\naugment: [none, flips]\n")
    study = tmp_path / "study"
    run_ok([*tune_command(space, "--sampler", "grid", "--workers", "2"), "--out", str(study)])
    trials = study_trials(str(study / "journal.log"), "grid")
    assert len(trials) == 4
    assert_distinct_complete(trials, 4)
    visited = {(t.params["lr"], t.params["augment"]) for t in trials}
    assert visited == {(lr, a) for lr in (0.001, 0.003) for a in ("none", "flips")}
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both workers ran trials
    assert (study / "best.yaml").is_file()


def kill_mid_trial(cmd: list[str], study: Path, env: dict[str, str] | None = None) -> None:
    """Start ``cmd`` and SIGKILL it once trial 0 has finished its first epoch (of 2)."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    history = study / "trials" / "0" / "history.csv"
    deadline = time.monotonic() + 240
    while not history.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert alive and history.exists(), err[-3000:]


def check_resumed(trials: list[Any]) -> None:
    """Trial 0 (killed) failed; its retry, trial 1, completed with the same parameters."""
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].system_attrs.get("failed_trial") == 0
    assert trials[1].params == trials[0].params


def test_killed_worker_then_resume_on_a_journal_file(tmp_path: Path, tune_command: Command) -> None:
    space = write_space(tmp_path / "space.yaml", "lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n")
    study = tmp_path / "study"
    cmd = [*tune_command(space, "--sampler", "random", "--trials", "1", "--epochs", "2")]
    cmd += ["--out", str(study)]
    kill_mid_trial(cmd, study)
    journal = str(study / "journal.log")
    assert [t.state.name for t in study_trials(journal, "space")] == ["RUNNING"]
    out = run_ok(cmd)
    assert "left running by dead process" in out.stderr
    check_resumed(study_trials(journal, "space"))


def test_two_machines_share_a_postgresql_study(
    postgres_url: str, tmp_path: Path, tune_command: Command
) -> None:
    space = write_space(tmp_path / "space.yaml", "lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n")
    common = ["--sampler", "tpe", "--trials", "4", "--storage", postgres_url, "--study", "pg2"]
    # The same command twice, as on two machines (each with its own study folder).
    procs = [
        subprocess.Popen(
            [*tune_command(space, *common), "--out", str(tmp_path / f"machine{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    trials = study_trials(postgres_url, "pg2")
    assert len(trials) == 4
    assert_distinct_complete(trials, 4)
    assert len({t.user_attrs["pid"] for t in trials}) == 2
    for i in range(2):  # each machine reports the whole study
        assert (tmp_path / f"machine{i}" / "best.yaml").is_file()


def test_worker_lost_on_another_machine_is_failed_by_heartbeat_and_retried(
    postgres_url: str, tmp_path: Path, tune_command: Command
) -> None:
    space = write_space(tmp_path / "space.yaml", "lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n")
    study = tmp_path / "study"
    cmd = tune_command(space, "--sampler", "random", "--trials", "1", "--epochs", "2")
    cmd += ["--storage", postgres_url, "--study", "pgkill", "--heartbeat", "1"]
    cmd += ["--out", str(study)]
    # The killed worker claims another machine: only the heartbeat can tell it is gone.
    kill_mid_trial(cmd, study, env={**os.environ, "METASTASIS_WORKER_HOST": "lost-machine"})
    before = study_trials(postgres_url, "pgkill")
    assert [t.state.name for t in before] == ["RUNNING"]
    assert before[0].user_attrs["host"] == "lost-machine"
    run_ok(cmd)
    check_resumed(study_trials(postgres_url, "pgkill"))
