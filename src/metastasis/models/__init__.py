"""The one model registry. A model family is one file that registers its names here.

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


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(
    name: str, preprocessing: Preprocessing | None = None, description: str = ""
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a factory ``(**kwargs) -> nn.Module`` returning one logit per patch."""

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = description or (factory.__doc__ or "").strip().splitlines()[0]
        MODELS.register(name)(ModelEntry(factory, preprocessing or Preprocessing(), doc))
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


def list_models() -> list[str]:
    _load_families()
    return MODELS.names()


def describe_models() -> dict[str, str]:
    _load_families()
    return {n: MODELS.get(n).description for n in MODELS.names()}
