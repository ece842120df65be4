"""The models: the registry (``registry.py``) and one file per family, each registering its names.

Importing this package imports every family, so every model is registered once it is imported.

>>> from metastasis.models import create_model, list_models
>>> model = create_model("baseline-cnn")
"""

from __future__ import annotations

from metastasis.models import (  # noqa: F401 (register)
    baseline_cnn,
    encoder_probe,
    ensemble,
    p4m_cnn,
    regularised_cnn,
    timm_backbones,
)
from metastasis.models.registry import (
    MODELS,
    ModelEntry,
    create_model,
    default_preprocessing,
    describe_models,
    effective_tta,
    layer_name,
    list_models,
    register_model,
    target_layer,
)

__all__ = [
    "MODELS",
    "ModelEntry",
    "create_model",
    "default_preprocessing",
    "describe_models",
    "effective_tta",
    "layer_name",
    "list_models",
    "register_model",
    "target_layer",
]
