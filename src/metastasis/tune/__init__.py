"""Hyper-parameter search over the trainer with Optuna (the optional ``hpo`` extra).

``tune(TuneSettings(...))`` runs or resumes a study whose trials are ordinary training runs;
``load_space`` reads a YAML search space. Optuna is imported only when a search runs, and the
trainer only when one of these names is used: ``metastasis tune --help`` reads
``tune.options`` alone.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metastasis.tune.result import TuneResult
    from metastasis.tune.search import TuneSettings, tune, write_study_report
    from metastasis.tune.space import SearchSpace, load_space

__all__ = ["SearchSpace", "TuneResult", "TuneSettings", "load_space", "tune", "write_study_report"]

_WHERE = {
    "TuneResult": "metastasis.tune.result",
    "TuneSettings": "metastasis.tune.search",
    "tune": "metastasis.tune.search",
    "write_study_report": "metastasis.tune.search",
    "SearchSpace": "metastasis.tune.space",
    "load_space": "metastasis.tune.space",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
