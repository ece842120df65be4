"""Ensembles of trained models as one checkpoint (``metastasis ensemble``).

Modules: ``options`` (the command's declared options; no torch), ``bundle`` (member checkpoints
checked together -> one ``ensemble`` bundle), ``cost`` (seconds per patch), ``build`` (the run
folder: threshold and metrics on validation data, cost, checkpoint, ONNX graph, model card).
The model itself is the ``ensemble`` family of ``metastasis.models``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["EnsembleOptions", "EnsembleResult", "build_ensemble", "ensemble_bundle"]

_WHERE = {
    "EnsembleOptions": "metastasis.ensemble.options",
    "EnsembleResult": "metastasis.ensemble.build",
    "build_ensemble": "metastasis.ensemble.build",
    "ensemble_bundle": "metastasis.ensemble.bundle",
}

if TYPE_CHECKING:
    from metastasis.ensemble.build import EnsembleResult, build_ensemble
    from metastasis.ensemble.bundle import ensemble_bundle
    from metastasis.ensemble.options import EnsembleOptions


def __getattr__(name: str) -> Any:
    """Import lazily: the command line parses with ``options`` alone (no torch)."""
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
