"""The checkpoint bundle: weights plus everything needed to use them.

One file, written with ``torch.save`` and read with ``torch.load(weights_only=True)``: it holds
only tensors and plain values (no pickled classes), so loading never runs code from the file.
A run folder is accepted wherever a checkpoint is.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metastasis.engine.environment import package_versions
from metastasis.errors import CheckpointError
from metastasis.io import atomic_path
from metastasis.models import create_model, list_models
from metastasis.transforms.presets import Preprocessing

FORMAT = "metastasis-checkpoint/1"
FILENAME = "checkpoint.pt"
CLASS_NAMES = ("normal", "tumour")


@dataclass
class Bundle:
    arch: str
    arch_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    preprocessing: Preprocessing
    threshold: float = 0.5
    temperature: float = 1.0  # logits are divided by it (temperature scaling)
    tta: str = "none"  # the test-time augmentation predict and evaluate use by default
    class_names: tuple[str, ...] = CLASS_NAMES
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=package_versions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "arch": self.arch,
            "arch_kwargs": self.arch_kwargs,
            "state_dict": self.state_dict,
            "preprocessing": self.preprocessing.to_dict(),
            "threshold": float(self.threshold),
            "temperature": float(self.temperature),
            "tta": self.tta,
            "class_names": list(self.class_names),
            "config": self.config,
            "metrics": self.metrics,
            "versions": self.versions,
        }

    def build_model(self) -> nn.Module:
        """The architecture with these weights, in eval mode."""
        kwargs = dict(self.arch_kwargs)
        if "pretrained" in kwargs:  # the bundle's weights replace them: never download
            kwargs["pretrained"] = False
        model = create_model(self.arch, **kwargs)
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"weights do not fit {self.arch}: {first}") from None
        return model.eval()


def checkpoint_path(path: str | Path) -> Path:
    p = Path(path)
    return p / FILENAME if p.is_dir() else p


def save_checkpoint(path: str | Path, bundle: Bundle) -> Path:
    with atomic_path(path) as tmp:
        torch.save(bundle.to_dict(), tmp)
    return Path(path)


def state_dict_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def load_checkpoint(path: str | Path) -> Bundle:
    """Load and validate a bundle; refuses anything but tensors and plain values."""
    p = checkpoint_path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint")
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{p}: refused: it holds objects other than tensors and plain "
            f"values, which could run code ({str(exc).splitlines()[0][:120]})"
        ) from None
    except Exception as exc:  # zip, pickle-stream and storage errors all mean "unreadable"
        raise CheckpointError(
            f"{p}: not a readable checkpoint ({str(exc).splitlines()[0]})"
        ) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a metastasis checkpoint (format {FORMAT} expected)")
    arch = raw.get("arch")
    if arch not in list_models():
        raise CheckpointError(f"{p}: unknown architecture {arch!r}")
    state = raw.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p}: state_dict missing or not all tensors")
    try:
        return Bundle(
            arch=str(arch),
            arch_kwargs=dict(raw.get("arch_kwargs") or {}),
            state_dict=state,
            preprocessing=Preprocessing.from_dict(raw["preprocessing"]),
            threshold=float(raw.get("threshold", 0.5)),
            temperature=float(raw.get("temperature", 1.0)),
            tta=str(raw.get("tta", "none")),
            class_names=tuple(raw.get("class_names", CLASS_NAMES)),
            config=dict(raw.get("config") or {}),
            metrics=dict(raw.get("metrics") or {}),
            versions=dict(raw.get("versions") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{p}: malformed metadata ({exc})") from None
