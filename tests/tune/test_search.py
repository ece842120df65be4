"""The search in one process: outputs, best config, resuming, pruning, bookkeeping."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from metastasis.cli import main
from metastasis.config import TrainConfig, resolve_config
from metastasis.engine.trainer import RunResult
from metastasis.errors import MetastasisError
from metastasis.tune import TuneSettings, tune
from metastasis.tune.space import parse_space

optuna = pytest.importorskip("optuna", reason="the hpo extra (optuna) is not installed")

from metastasis.tune import liveness, search  # noqa: E402  (needs optuna)
from metastasis.tune.study import load_existing_study, make_storage  # noqa: E402

SPACE = {
    "lr": {"low": 3e-4, "high": 3e-3, "log": True},
    "model_kwargs.dropout": {"low": 0.0, "high": 0.5},
    "augment": ["none", "flips"],
}


def settings_for(demo: Path, out: Path, **changes: Any) -> TuneSettings:
    base = TrainConfig(
        data=str(demo / "train"), val_data=str(demo / "valid"), epochs=1, batch_size=64
    )
    values: dict[str, Any] = {
        "base": base,
        "space": parse_space(SPACE),
        "study_dir": out,
        "study_name": "s",
        "sampler": "random",
        "trials": 2,
    }
    return TuneSettings(**{**values, **changes})


def stored_trials(settings: TuneSettings) -> list[Any]:
    study = load_existing_study(settings.study_name, make_storage(settings.storage_url))
    return study.get_trials()


def test_random_search_writes_outputs_and_best_config_reproduces(
    demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(demo_data, tmp_path / "study")
    result = tune(settings, progress=False)
    assert result.counts["complete"] == 2 and result.best_number is not None
    table = pd.read_csv(result.files["trials"])
    assert list(table["state"]) == ["COMPLETE", "COMPLETE"]
    assert {"lr", "model_kwargs.dropout", "augment", "val_roc_auc", "run_dir"} <= set(table)
    for name in ("trials/0/metrics.json", "trials/1/checkpoint.pt", "best.yaml", "report.html"):
        assert (result.study_dir / name).is_file(), name
    assert (result.study_dir / "optimisation_history.png").is_file()
    assert json.loads((result.study_dir / "summary.json").read_text())["complete"] == 2

    best = result.files["best"]
    assert "out" not in yaml.safe_load(best.read_text())
    cfg = resolve_config(best)
    assert cfg.lr == pytest.approx(result.best_params["lr"])
    assert cfg.model_kwargs["dropout"] == pytest.approx(result.best_params["model_kwargs.dropout"])
    # `metastasis train --config best.yaml`, unchanged, reproduces the trial's validation AUC.
    run = tmp_path / "retrain"
    assert main(["-q", "train", "--config", str(best), "--out", str(run), "--no-progress"]) == 0
    retrained = json.loads((run / "metrics.json").read_text())["val"]["roc_auc"]
    assert retrained == pytest.approx(result.best_value, abs=0.005)


def fake_fit(
    cfg: TrainConfig, progress: bool = True, on_epoch_end: Any = None, **_: Any
) -> RunResult:
    """Training replaced by a curve that only depends on lr: higher lr, better AUC."""
    Path(str(cfg.out)).mkdir(parents=True)
    auc = 0.0
    for epoch in range(1, cfg.epochs + 1):
        auc = min(0.99, cfg.lr * 100 * epoch / cfg.epochs)
        on_epoch_end(epoch, {"val_roc_auc": auc})
    return RunResult(Path(str(cfg.out)), {"val": {"roc_auc": auc}}, cfg.epochs, pd.DataFrame())


def test_rerunning_resumes_the_study(
    demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("metastasis.training.train", fake_fit)
    settings = settings_for(demo_data, tmp_path / "study", trials=1)
    tune(settings, progress=False)
    first = stored_trials(settings)[0].params
    result = tune(settings_for(demo_data, tmp_path / "study", trials=2), progress=False)
    trials = stored_trials(settings)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert trials[0].params == first and trials[1].params != first
    assert result.counts["complete"] == 2
    # Same study name and storage, another space: refused rather than mixed.
    other = settings_for(demo_data, tmp_path / "study", space=parse_space({"lr": [0.1, 0.2]}))
    with pytest.raises(MetastasisError, match="searches a different space"):
        tune(other, progress=False)


def test_poor_trials_are_pruned_and_tpe_runs(
    demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("metastasis.training.train", fake_fit)
    space = parse_space({"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "epochs": 4})
    settings = settings_for(
        demo_data, tmp_path / "s", space=space, sampler="tpe", trials=12, pruner="median"
    )
    result = tune(settings, progress=False)
    trials = stored_trials(settings)
    assert len(trials) == 12
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned, "the median pruner never stopped a trial"
    assert all(len(t.intermediate_values) < 4 for t in pruned)
    assert result.counts["complete"] + result.counts["pruned"] == 12


def test_a_search_whose_trials_keep_failing_stops(
    demo_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_auc(
        cfg: TrainConfig, progress: bool = True, on_epoch_end: Any = None, **_: Any
    ) -> RunResult:
        Path(str(cfg.out)).mkdir(parents=True)  # e.g. a validation set with one class
        return RunResult(Path(str(cfg.out)), {"val": {"roc_auc": None}}, 1, pd.DataFrame())

    monkeypatch.setattr("metastasis.training.train", no_auc)
    with pytest.raises(MetastasisError, match="3 trials in a row failed"):
        tune(settings_for(demo_data, tmp_path / "s", trials=5), progress=False)


def frozen(number: int, state: str, **system_attrs: Any) -> Any:
    trial = optuna.trial.create_trial(
        state=getattr(optuna.trial.TrialState, state),
        value=0.5 if state == "COMPLETE" else None,
        system_attrs=system_attrs,
    )
    trial.number = number
    return trial


def test_counting_towards_the_target() -> None:
    trials = [frozen(0, "COMPLETE"), frozen(1, "FAIL"), frozen(2, "RUNNING"), frozen(3, "PRUNED")]
    assert search._covered(trials, grid=False) == 3
    assert search._is_done(trials, grid=False, target=3)
    assert not search._is_done(trials, grid=False, target=4)
    grid = [frozen(0, "COMPLETE", grid_id=0), frozen(1, "COMPLETE", grid_id=0)]
    assert search._covered(grid, grid=True) == 1  # a repeated grid point counts once
    # Grid point 1 failed for good: finish rather than repeat points.
    failed = [frozen(0, "COMPLETE", grid_id=0), frozen(1, "FAIL", grid_id=1)]
    assert search._is_done(failed, grid=True, target=2)
    assert not search._is_done([*failed, frozen(2, "WAITING")], grid=True, target=2)


def test_workers_with_one_seed_draw_different_parameters_per_trial() -> None:
    from metastasis.tune.study import make_sampler

    space = parse_space({"lr": {"low": 1e-4, "high": 1e-2, "log": True}})
    draws = []
    for _ in range(2):  # two workers: separate processes, the same --search-seed
        study = optuna.create_study(sampler=make_sampler("random", space, seed=0, trials=4))
        draws.append([study.ask().suggest_float("lr", 1e-4, 1e-2, log=True) for _ in range(4)])
    assert draws[0] == draws[1]  # trial k gets the same value wherever it runs ...
    assert len(set(draws[0])) == 4  # ... and trials differ


def test_dead_local_workers_are_recognised() -> None:
    me = liveness.worker_identity()
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    assert liveness.is_dead_local_worker({**me, "pid": done.pid, "pid_start": None}, me)
    assert not liveness.is_dead_local_worker(me, me)  # this process
    assert not liveness.is_dead_local_worker({**me, "host": "elsewhere", "pid": done.pid}, me)
    if me["boot_id"]:
        rebooted = {**me, "boot_id": "x", "pid": 1}
        assert liveness.is_dead_local_worker(rebooted, me)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as alive:
        try:
            attrs = {**me, "pid": alive.pid, "pid_start": liveness._process_start(alive.pid)}
            assert not liveness.is_dead_local_worker(attrs, me)
        finally:
            alive.kill()


def test_without_optuna_one_line_error(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("lr: [0.1, 0.2]\n")
    code = (
        "import sys; sys.modules['optuna'] = None\n"
        "from metastasis.cli import main\n"
        f"sys.exit(main(['tune', '--space', {str(space)!r}, '--data', 'x', '--trials', '1']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "metastasis tune: error: hyper-parameter search needs Optuna: pip install 'metastasis[hpo]'"
    )
