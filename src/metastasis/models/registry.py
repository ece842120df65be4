"""The model registry: each name -> a factory, its preprocessing and the layer Grad-CAM explains.

A model family is one file in this package that decorates its factories with ``register_model``;
``metastasis.models`` imports every family, so ``import metastasis.models`` registers them all.
This module imports no family (the families import it), so nothing here imports lazily.

Each entry names, besides its factory and preprocessing, the layer Grad-CAM explains
(``target_layer``: a dotted sub-module name, the last convolutional feature map; or, for a family
whose layout depends on its arguments (``ensemble``), a function of the built model giving it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from metastasis.transforms.presets import Preprocessing


@dataclass(frozen=True)
class ModelEntry:
    factory: Callable[..., nn.Module]
    preprocessing: Preprocessing
    description: str
    # dotted name of the sub-module Grad-CAM explains (``get_submodule``), or model -> that name
    target_layer: str | Callable[[nn.Module], str]
    invariance: str = "none"  # "d4": the logit is the same for the 8 dihedral views (no TTA needed)


class ModelRegistry:
    """Registered names -> entries; a name is registered once."""

    def __init__(self) -> None:
        self._items: dict[str, ModelEntry] = {}

    def register(self, name: str) -> Callable[[ModelEntry], ModelEntry]:
        def decorator(entry: ModelEntry) -> ModelEntry:
            if name in self._items:
                raise ValueError(f"model {name!r} is already registered")
            self._items[name] = entry
            return entry

        return decorator

    def get(self, name: str) -> ModelEntry:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"unknown model {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


MODELS = ModelRegistry()


def register_model(
    name: str,
    preprocessing: Preprocessing | None = None,
    description: str = "",
    target_layer: str | Callable[[nn.Module], str] = "features",
    invariance: str = "none",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a factory ``(**kwargs) -> nn.Module`` returning one logit per patch.

    ``target_layer`` names the sub-module whose output Grad-CAM explains (its last convolutional
    feature map, N x C x h x w), or is a function of the built model giving that name.
    ``invariance="d4"`` promises the same logit for the 8 dihedral views of a patch (to float
    rounding), so 8-view test-time augmentation is skipped for it."""

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = description or (factory.__doc__ or "").strip().splitlines()[0]
        entry = ModelEntry(factory, preprocessing or Preprocessing(), doc, target_layer, invariance)
        MODELS.register(name)(entry)
        return factory

    return decorator


def create_model(name: str, **kwargs: Any) -> nn.Module:
    return MODELS.get(name).factory(**kwargs)


def default_preprocessing(name: str) -> Preprocessing:
    return MODELS.get(name).preprocessing


def layer_name(name: str, model: nn.Module) -> str:
    """The dotted name of the layer of ``model`` (built as ``name``) that Grad-CAM explains."""
    layer = MODELS.get(name).target_layer
    return layer if isinstance(layer, str) else layer(model)


def target_layer(name: str, model: nn.Module) -> nn.Module:
    """The layer of ``model`` (built as ``name``) that Grad-CAM explains."""
    return model.get_submodule(layer_name(name, model))


def effective_tta(name: str, tta: str) -> str:
    """The test-time augmentation worth running for model ``name``: ``d4`` on a D4-invariant
    model would average 8 equal outputs at 8 times the cost, so it becomes ``none``."""
    if tta == "d4" and name in MODELS and MODELS.get(name).invariance == "d4":
        return "none"
    return tta


def list_models() -> list[str]:
    return MODELS.names()


def describe_models() -> dict[str, str]:
    return {n: MODELS.get(n).description for n in MODELS.names()}
