"""The one model registry. A model family is one file that registers its names here.

Each entry names, besides its factory and preprocessing, the layer Grad-CAM explains
(``target_layer``: a dotted sub-module name, the last convolutional feature map).

>>> from metastasis.models import create_model, list_models
>>> model = create_model("baseline-cnn")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from metastasis.registry import Registry
from metastasis.transforms.presets import Preprocessing


@dataclass(frozen=True)
class ModelEntry:
    factory: Callable[..., nn.Module]
    preprocessing: Preprocessing
    description: str
    target_layer: str  # dotted name of the sub-module Grad-CAM explains (``get_submodule``)


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(
    name: str,
    preprocessing: Preprocessing | None = None,
    description: str = "",
    target_layer: str = "features",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a factory ``(**kwargs) -> nn.Module`` returning one logit per patch.

    ``target_layer`` names the sub-module whose output Grad-CAM explains (its last convolutional
    feature map, N x C x h x w)."""

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = description or (factory.__doc__ or "").strip().splitlines()[0]
        entry = ModelEntry(factory, preprocessing or Preprocessing(), doc, target_layer)
        MODELS.register(name)(entry)
        return factory

    return decorator


def _load_families() -> None:
    from metastasis.models import baseline_cnn, regularised_cnn, timm_backbones  # noqa: F401


def create_model(name: str, **kwargs: Any) -> nn.Module:
    _load_families()
    return MODELS.get(name).factory(**kwargs)


def default_preprocessing(name: str) -> Preprocessing:
    _load_families()
    return MODELS.get(name).preprocessing


def target_layer(name: str, model: nn.Module) -> nn.Module:
    """The layer of ``model`` (built as ``name``) that Grad-CAM explains."""
    _load_families()
    return model.get_submodule(MODELS.get(name).target_layer)


def list_models() -> list[str]:
    _load_families()
    return MODELS.names()


def describe_models() -> dict[str, str]:
    _load_families()
    return {n: MODELS.get(n).description for n in MODELS.names()}
