"""Hyper-parameter search over the trainer with Optuna (the optional ``hpo`` extra).

``tune(TuneSettings(...))`` runs or resumes a study whose trials are ordinary training runs;
``load_space`` reads a YAML search space. Optuna is imported only when a search runs.
"""

from __future__ import annotations

from metastasis.tune.result import TuneResult
from metastasis.tune.search import TuneSettings, tune, write_study_report
from metastasis.tune.space import SearchSpace, load_space

__all__ = ["SearchSpace", "TuneResult", "TuneSettings", "load_space", "tune", "write_study_report"]
