"""A study's outputs in its folder: ``trials.csv``, ``best.yaml``, ``summary.json``, plots and
``report.html`` (the template ``tune.html`` of :mod:`metastasis.reports.html`), all from the
storage (so any machine sharing the study can write them).

``best.yaml`` is the best trial's resolved config without ``out``: `metastasis train --config
best.yaml` re-runs it into a new run folder.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from optuna.trial import FrozenTrial, TrialState

from metastasis.config import build_config
from metastasis.io import atomic_path, atomic_write_json, atomic_write_text, output_dir
from metastasis.tune.result import TuneResult

log = logging.getLogger(__name__)

_FIXED_COLUMNS = ["number", "state", "val_roc_auc", "best_epoch", "epochs_run"]
_CAPTIONS = {
    "history_plot": "Validation ROC-AUC of each trial and the best so far",
    "slices_plot": "Validation ROC-AUC against each parameter",
    "curves_plot": "Validation ROC-AUC per epoch of each trial (dashed: pruned)",
    "importances_plot": "Parameter importances",
}


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: state, validation ROC-AUC, parameters, timing, worker, run folder."""
    trials = study.get_trials(deepcopy=False)
    params = _param_names(trials)
    rows = []
    for t in trials:
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "val_roc_auc": t.value if t.state == TrialState.COMPLETE else _last(t),
                "best_epoch": t.user_attrs.get("best_epoch"),
                "epochs_run": len(t.intermediate_values),
                **{name: t.params.get(name) for name in params},
                "seconds": None if seconds is None else round(seconds, 1),
                "started": t.datetime_start,
                "host": t.user_attrs.get("host"),
                "pid": t.user_attrs.get("pid"),
                "run_dir": t.user_attrs.get("run_dir"),
                "retry_of": t.system_attrs.get("failed_trial"),
                "note": "surplus" if t.user_attrs.get("surplus") else None,
            }
        )
    columns = [*_FIXED_COLUMNS, *params, "seconds", "started", "host", "pid", "run_dir"]
    table = pd.DataFrame(rows, columns=[*columns, "retry_of", "note"])
    for name in ("best_epoch", "pid", "retry_of"):  # whole numbers, some missing
        table[name] = table[name].astype("Int64")
    return table


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and not math.isnan(t.value) and "config" in t.user_attrs
    ]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def best_config_yaml(study: optuna.Study, trial: FrozenTrial) -> str:
    """The trial's resolved config, without ``out``, as `metastasis train --config` reads it."""
    settings = {k: v for k, v in trial.user_attrs["config"].items() if k != "out"}
    build_config(settings, source=f"trial {trial.number}")  # it must load as it is
    header = (
        f"# Best trial {trial.number} of study {study.study_name!r}: validation ROC-AUC "
        f"{trial.value:.4f} (epoch {trial.user_attrs.get('best_epoch')}).\n"
        f"# Its run folder: {trial.user_attrs.get('run_dir')} on {trial.user_attrs.get('host')}.\n"
        "# Re-run with: metastasis train --config best.yaml\n"
    )
    return header + yaml.safe_dump(settings, sort_keys=False)


def importances(study: optuna.Study) -> dict[str, float]:
    """Optuna's parameter importances; empty when too few trials (or one varying parameter)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 2:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError, ZeroDivisionError) as exc:
        log.info("parameter importances skipped: %s", exc)
        return {}


def write_report(study: optuna.Study, study_dir: Path, sampler: str) -> TuneResult:
    """Write every output of ``study`` into ``study_dir``."""
    output_dir(study_dir, "study folder")
    table = trials_table(study)
    files: dict[str, Path] = {"trials": study_dir / "trials.csv"}
    with atomic_path(files["trials"]) as tmp:
        table.to_csv(tmp, index=False)
    counts = {s.name.lower(): int((table["state"] == s.name).sum()) for s in TrialState}
    best = best_trial(study)
    if best is not None:
        files["best"] = atomic_write_text(study_dir / "best.yaml", best_config_yaml(study, best))
    files.update(_write_plots(study, table, study_dir))
    summary: dict[str, Any] = {
        "study": study.study_name,
        "sampler": sampler,
        "trials": len(table),
        **counts,
        "best_trial": None if best is None else best.number,
        "best_val_roc_auc": None if best is None else best.value,
        "best_epoch": None if best is None else best.user_attrs.get("best_epoch"),
        "best_run_dir": None if best is None else best.user_attrs.get("run_dir"),
    }
    files["summary"] = atomic_write_json(
        study_dir / "summary.json", {**summary, "best_params": best.params if best else {}}
    )
    files["report"] = _write_page(study, summary, best, table, files, study_dir)
    return TuneResult(
        study_dir=study_dir,
        study_name=study.study_name,
        counts=counts,
        best_number=None if best is None else best.number,
        best_value=None if best is None else best.value,
        best_params={} if best is None else dict(best.params),
        files=files,
    )


def _write_page(
    study: optuna.Study,
    summary: dict[str, Any],
    best: FrozenTrial | None,
    table: pd.DataFrame,
    files: dict[str, Path],
    study_dir: Path,
) -> Path:
    """``report.html`` (template ``tune.html``): summary, best parameters, plots, trials."""
    from metastasis.reports.html import frame_table, write_page

    header, rows = frame_table(table.drop(columns=["started"]))
    notes = [
        "Value: the best validation ROC-AUC over a trial's epochs (pruned: its last epoch's).",
        "best.yaml is the best trial's config; `metastasis train --config best.yaml` re-runs it.",
    ]
    return write_page(
        study_dir / "report.html",
        "tune.html",
        title=f"metastasis study: {study.study_name}",
        summary=[[k, v] for k, v in summary.items()],
        best_params=[[k, v] for k, v in (best.params if best else {}).items()],
        figures=[
            {"file": p.name, "caption": _CAPTIONS.get(key, p.name)}
            for key, p in files.items()
            if p.suffix == ".png"
        ],
        trials_header=header,
        trials=rows,
        trial_classes=[str(state).lower() for state in table["state"]],
        notes=notes,
    )


def _write_plots(study: optuna.Study, table: pd.DataFrame, study_dir: Path) -> dict[str, Path]:
    from metastasis.reports.figures import save_figure
    from metastasis.tune import plots

    finished = table[table["state"].isin(["COMPLETE", "PRUNED"])]
    if finished.empty:
        return {}
    trials = study.get_trials(deepcopy=False)
    params = _param_names(trials)
    log_scale = {
        name: bool(getattr(t.distributions[name], "log", False))
        for t in trials
        for name in t.distributions
    }
    out = {
        "history_plot": save_figure(
            plots.plot_optimisation_history(finished), study_dir / "optimisation_history.png"
        ),
        "slices_plot": save_figure(
            plots.plot_slices(finished, params, log_scale), study_dir / "slices.png"
        ),
        "curves_plot": save_figure(
            plots.plot_intermediate(
                {t.number: t.intermediate_values for t in trials if t.intermediate_values},
                {t.number for t in trials if t.state == TrialState.PRUNED},
            ),
            study_dir / "learning_curves.png",
        ),
    }
    scores = importances(study)
    if scores:
        out["importances_plot"] = save_figure(
            plots.plot_importances(scores), study_dir / "importances.png"
        )
    return out


def _param_names(trials: list[FrozenTrial]) -> list[str]:
    names: dict[str, None] = {}
    for t in trials:
        names.update(dict.fromkeys(t.params))
    return list(names)


def _last(trial: FrozenTrial) -> float | None:
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        return trial.intermediate_values[max(trial.intermediate_values)]
    return None
