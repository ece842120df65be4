"""tune.report: a study's outputs from its storage, without training (trials made by hand), and
its report.html in a real browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.browser import assert_sound, open_report

from metastasis.config import TrainConfig

optuna = pytest.importorskip("optuna", reason="the hpo extra (optuna) is not installed")

from optuna.distributions import CategoricalDistribution, FloatDistribution  # noqa: E402
from optuna.trial import TrialState, create_trial  # noqa: E402

from metastasis.tune.report import write_report  # noqa: E402

HOSTILE = "<script>alert(1)</script>"
DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 1e-2, log=True),
    "augment": CategoricalDistribution(["none", "flips"]),
}


def _trial(number: int, state: TrialState, lr: float, curve: dict[int, float]) -> Any:
    config = {k: v for k, v in TrainConfig(data="d", lr=lr).to_dict().items() if k != "out"}
    return create_trial(
        state=state,
        value=max(curve.values()) if state == TrialState.COMPLETE else None,
        params={"lr": lr, "augment": "flips" if number % 2 else "none"},
        distributions=DISTRIBUTIONS,
        user_attrs={"config": config, "best_epoch": 2, "run_dir": f"trials/{number}"},
        intermediate_values=curve,
    )


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five trials: three complete, one pruned, one failed; the study named like markup."""
    study = optuna.create_study(study_name=HOSTILE, direction="maximize")
    study.add_trial(_trial(0, TrialState.COMPLETE, 1e-3, {1: 0.71, 2: 0.78}))
    study.add_trial(_trial(1, TrialState.COMPLETE, 3e-3, {1: 0.74, 2: 0.83}))
    study.add_trial(_trial(2, TrialState.PRUNED, 1e-4, {1: 0.52}))
    study.add_trial(_trial(3, TrialState.COMPLETE, 5e-4, {1: 0.69, 2: 0.75}))
    study.add_trial(_trial(4, TrialState.FAIL, 2e-3, {}))
    out = tmp_path_factory.mktemp("study")
    write_report(study, out, "random")
    return out


def test_outputs_and_page(study_dir: Path) -> None:
    trials = pd.read_csv(study_dir / "trials.csv")
    assert list(trials["state"]) == ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE", "FAIL"]
    page = (study_dir / "report.html").read_text()
    assert page.count("<style>") == 1 and "<link" not in page
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<tr class="pruned">' in page and '<tr class="fail">' in page
    for png in ("optimisation_history.png", "slices.png", "learning_curves.png"):
        assert f'src="{png}"' in page and (study_dir / png).is_file()


def test_page_in_chromium(study_dir: Path, chromium: Any) -> None:
    opened = open_report(chromium, study_dir / "report.html")
    assert_sound(opened)
    assert opened.heading == f"metastasis study: {HOSTILE}"  # shown as text, not run
    assert opened.rows["trials"] == 5 and opened.rows["best-params"] == 2
    assert opened.rows["summary"] >= 8
    assert {src for src, _ in opened.images} >= {"optimisation_history.png", "slices.png"}
