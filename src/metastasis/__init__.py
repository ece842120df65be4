"""metastasis: detect metastatic cancer in H&E lymph-node patches (PCam / Kaggle).

The public API; each CLI command is one of these calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Predictor",
    "TrainConfig",
    "analyse_slide",
    "check_dataset",
    "create_model",
    "evaluate_checkpoint",
    "explain_to_folder",
    "export_checkpoint",
    "fit",
    "gradcam",
    "list_models",
    "load_checkpoint",
    "open_split",
    "overlay",
    "predict_to_csv",
    "resolve_config",
    "run_slides",
    "train",
    "write_eda_report",
]

_WHERE = {
    "Predictor": "metastasis.inference.predictor",
    "TrainConfig": "metastasis.config",
    "resolve_config": "metastasis.config",
    "check_dataset": "metastasis.data.checks",
    "open_split": "metastasis.data.cache",
    "create_model": "metastasis.models",
    "list_models": "metastasis.models",
    "fit": "metastasis.training",
    "train": "metastasis.training",
    "load_checkpoint": "metastasis.checkpoint",
    "evaluate_checkpoint": "metastasis.inference.evaluate",
    "predict_to_csv": "metastasis.inference.predict",
    "explain_to_folder": "metastasis.inference.explain",
    "gradcam": "metastasis.inference.explain",
    "overlay": "metastasis.inference.explain",
    "export_checkpoint": "metastasis.export.bundle",
    "write_eda_report": "metastasis.eda.report",
    "run_slides": "metastasis.slides.run",
    "analyse_slide": "metastasis.slides.analyse",
}

if TYPE_CHECKING:
    from metastasis.checkpoint import load_checkpoint
    from metastasis.config import TrainConfig, resolve_config
    from metastasis.data.cache import open_split
    from metastasis.data.checks import check_dataset
    from metastasis.eda.report import write_eda_report
    from metastasis.export.bundle import export_checkpoint
    from metastasis.inference.evaluate import evaluate_checkpoint
    from metastasis.inference.explain import explain_to_folder, gradcam, overlay
    from metastasis.inference.predict import predict_to_csv
    from metastasis.inference.predictor import Predictor
    from metastasis.models import create_model, list_models
    from metastasis.slides.analyse import analyse_slide
    from metastasis.slides.run import run_slides
    from metastasis.training import fit, train


def __getattr__(name: str) -> Any:
    """Import lazily, so `import metastasis` (and the CLI's start) stays fast."""
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'metastasis' has no attribute {name!r}")
