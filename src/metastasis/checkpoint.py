"""The checkpoint bundle: weights plus everything needed to use them.

One file, written with ``torch.save`` and read with ``torch.load(weights_only=True)``: it holds
only tensors and plain values (no pickled classes), so loading never runs code from the file.
A run folder is accepted wherever a checkpoint is. Training writes it; inference, slides, serve
and export read it, without importing the training package (``metastasis.engine``).

``read_checkpoint_meta`` reads the plain values of a checkpoint (everything but the weights)
without importing PyTorch, so a command that runs the run folder's ``model.onnx`` can start
without it (``inference.light``). It unpickles with an allow-list that is narrower than
``weights_only``'s: a tensor becomes a ``TensorStub`` (shape and type, no data read).
"""

from __future__ import annotations

import math
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metastasis.data.decode import PCAM_MPP
from metastasis.data.synthetic import SYNTHETIC_WARNING
from metastasis.errors import CheckpointError, first_line
from metastasis.io import atomic_path
from metastasis.versions import package_versions

if TYPE_CHECKING:  # PyTorch is imported where weights are used, not to read the metadata
    import torch
    from torch import nn

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
    synthetic: bool = False  # trained on the built-in synthetic drawings (``data.synthetic``)

    @property
    def warning(self) -> str | None:
        """What every place that shows this model must say first, if anything."""
        return SYNTHETIC_WARNING if self.synthetic else None

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
            "synthetic": bool(self.synthetic),
        }

    def build_model(self) -> nn.Module:
        """The architecture with these weights, in eval mode."""
        from metastasis.models import create_model

        kwargs = dict(self.arch_kwargs)
        if "pretrained" in kwargs:  # the bundle's weights replace them: never download
            kwargs["pretrained"] = False
        try:
            model = create_model(self.arch, **kwargs)
        except Exception as exc:  # a factory refuses unknown or bad arguments in many ways
            raise CheckpointError(
                f"arch_kwargs: {self.arch} cannot be built with {self.arch_kwargs}: "
                f"{first_line(exc)}"
            ) from None
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"state_dict: weights do not fit {self.arch}: {first_line(exc)}"
            ) from None
        return model.eval()


def checkpoint_path(path: str | Path) -> Path:
    p = Path(path)
    return p / FILENAME if p.is_dir() else p


def save_checkpoint(path: str | Path, bundle: Bundle) -> Path:
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a full disk raises OSError
        torch.save(bundle.to_dict(), fh)
    return Path(path)


def state_dict_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s weights on the CPU."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def load_checkpoint(path: str | Path) -> Bundle:
    """Load and validate a bundle; refuses anything but tensors and plain values.

    Every field is checked (type, range, finiteness), then the model is built with its
    arguments and weights and run on a probe batch at the bundle's input size: a checkpoint
    whose metadata does not fit its model is one `CheckpointError` naming the field, never a
    traceback later and never a silent 0 or 1 for every patch.
    """
    import torch

    p = checkpoint_path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint")
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{p}: refused: it holds objects other than tensors and plain "
            f"values, which could run code ({first_line(exc)[:120]})"
        ) from None
    except Exception as exc:  # zip, pickle-stream and storage errors all mean "unreadable"
        raise CheckpointError(f"{p}: not a readable checkpoint ({first_line(exc)})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a metastasis checkpoint (format {FORMAT} expected)")
    try:
        bundle = _bundle_from_raw(raw)
        _probe(bundle)
    except CheckpointError as exc:
        raise CheckpointError(f"{p}: {exc}") from None
    return bundle


@dataclass(frozen=True)
class TensorStub:
    """A tensor of a checkpoint read without PyTorch: where its data is, not the data."""

    storage: str  # the storage's type name (``FloatStorage``)
    key: str  # the storage's record in the checkpoint's zip file
    shape: tuple[int, ...]


@dataclass
class CheckpointMeta:
    """Everything a checkpoint says but its weights (``read_checkpoint_meta``)."""

    path: Path
    arch: str
    preprocessing: dict[str, Any]  # input_size, mean, std, mpp, stain (``preprocessing_values``)
    threshold: float
    temperature: float
    tta: str
    class_names: tuple[str, ...]
    arch_kwargs: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, Any]
    versions: dict[str, str]
    synthetic: bool
    tensors: int  # how many tensors the state dict holds

    @property
    def warning(self) -> str | None:
        return SYNTHETIC_WARNING if self.synthetic else None


class _MetaUnpickler(pickle.Unpickler):
    """The plain values of a ``torch.save`` pickle; tensors become ``TensorStub``s and any
    global but the few a state dict needs is refused (nothing in the file can run code)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _stub_tensor
        if module == "torch" and name.endswith("Storage"):
            return name
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.60}")
        return (str(pid[1]), str(pid[2]))


def _stub_tensor(storage: tuple[str, str], offset: int, size: Any, *_: Any) -> TensorStub:
    return TensorStub(storage[0], storage[1], tuple(int(n) for n in size))


def read_checkpoint_meta(path: str | Path) -> CheckpointMeta:
    """The plain values of a checkpoint (or a run folder's), checked as ``load_checkpoint``
    checks them, without importing PyTorch or reading the weights. The architecture and the
    weights are not checked here: ``load_checkpoint`` does that by building the model."""
    p = checkpoint_path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint")
    try:
        with zipfile.ZipFile(p) as archive:
            pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pkl) != 1:
                raise CheckpointError(f"{p}: not a readable checkpoint (no single data.pkl)")
            with archive.open(pkl[0]) as fh:
                raw = _MetaUnpickler(fh).load()
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{p}: refused: {first_line(exc)[:120]}") from None
    except CheckpointError:
        raise
    except Exception as exc:  # a damaged zip or pickle stream: "unreadable", as load says
        raise CheckpointError(f"{p}: not a readable checkpoint ({first_line(exc)})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not a metastasis checkpoint (format {FORMAT} expected)")
    state = raw.get("state_dict")
    try:
        if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, TensorStub) for k, v in state.items()
        ):
            raise CheckpointError("state_dict missing or not all tensors")
        if not isinstance(raw.get("arch"), str):
            raise CheckpointError(f"unknown architecture {raw.get('arch')!r}")
        fields = _plain_fields(raw)
        pre = preprocessing_values(raw.get("preprocessing"))
    except CheckpointError as exc:
        raise CheckpointError(f"{p}: {exc}") from None
    return CheckpointMeta(p, raw["arch"], pre, tensors=len(state), **fields)


def _bundle_from_raw(raw: dict[str, Any]) -> Bundle:
    """The bundle of a loaded dict, each field checked; errors name the field."""
    import torch

    from metastasis.models import list_models

    arch = raw.get("arch")
    if arch not in list_models():
        raise CheckpointError(f"unknown architecture {arch!r}")
    state = raw.get("state_dict")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError("state_dict missing or not all tensors")
    fields = _plain_fields(raw)
    return Bundle(
        arch=str(arch),
        state_dict=state,
        preprocessing=_preprocessing(raw.get("preprocessing")),
        **fields,
    )


def _plain_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """The checked plain fields of a checkpoint but its preprocessing (no PyTorch needed)."""
    from metastasis.config import TTA_MODES

    arch_kwargs = _field(raw, "arch_kwargs", dict, {})
    if not all(isinstance(k, str) for k in arch_kwargs):
        raise CheckpointError(f"arch_kwargs: keys must be names, got {list(arch_kwargs)!r}")
    tta = _field(raw, "tta", str, "none")
    if tta not in TTA_MODES:
        raise CheckpointError(f"tta: {tta!r} is not one of {', '.join(TTA_MODES)}")
    class_names = _field(raw, "class_names", (list, tuple), list(CLASS_NAMES))
    if len(class_names) != 2 or not all(isinstance(c, str) for c in class_names):
        raise CheckpointError(f"class_names: expected two names, got {class_names!r}")
    return dict(
        arch_kwargs=dict(arch_kwargs),
        threshold=_number(raw, "threshold", 0.5, low=0.0, high=1.0),
        temperature=_number(raw, "temperature", 1.0, low=0.0, high=1e6, open_low=True),
        tta=tta,
        class_names=tuple(class_names),
        config=dict(_field(raw, "config", dict, {})),
        metrics=dict(_field(raw, "metrics", dict, {})),
        versions=dict(_field(raw, "versions", dict, {})),
        synthetic=_field(raw, "synthetic", bool, False),
    )


def _field(raw: dict[str, Any], name: str, kind: Any, default: Any) -> Any:
    value = raw.get(name, default)
    if value is None and default is not None:
        value = default
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else "a list"
        raise CheckpointError(f"{name}: expected {expected}, got {type(value).__name__}")
    return value


def _number(
    raw: dict[str, Any],
    name: str,
    default: float,
    low: float,
    high: float,
    open_low: bool = False,
) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CheckpointError(f"{name}: expected a number, got {value!r}")
    value = float(value)
    too_low = value <= low if open_low else value < low
    if not math.isfinite(value) or too_low or value > high:
        bounds = f"{'(' if open_low else '['}{low:g}, {high:g}]"
        raise CheckpointError(f"{name}: {value} is outside {bounds}")
    return value


def _preprocessing(pre: Any) -> Preprocessing:
    from metastasis.transforms.presets import Preprocessing

    return Preprocessing.from_dict(preprocessing_values(pre))


def preprocessing_values(pre: Any) -> dict[str, Any]:
    """A checkpoint's ``preprocessing`` entry checked: input_size, mean, std, mpp, stain."""
    if pre is None:
        raise CheckpointError("preprocessing: missing")
    if not isinstance(pre, dict):
        raise CheckpointError(f"preprocessing: expected dict, got {type(pre).__name__}")
    size = pre.get("input_size")
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 4096:
        raise CheckpointError(f"preprocessing.input_size: expected 16..4096, got {size!r}")
    stats = {}
    for name in ("mean", "std"):
        v = pre.get(name)
        if (
            not isinstance(v, (list, tuple))
            or len(v) != 3
            or not all(isinstance(c, (int, float)) and math.isfinite(c) for c in v)
        ):
            raise CheckpointError(f"preprocessing.{name}: expected 3 finite numbers, got {v!r}")
        stats[name] = tuple(float(c) for c in v)
    if min(stats["std"]) <= 0:
        raise CheckpointError(f"preprocessing.std: must be positive, got {stats['std']}")
    mpp = _number(pre, "mpp", PCAM_MPP, low=0.0, high=1000.0, open_low=True)
    values = {"input_size": size, "mean": stats["mean"], "std": stats["std"], "mpp": mpp}
    values["stain"] = None  # stain normalisation's reference; older checkpoints have none
    if pre.get("stain") is not None:
        from metastasis.transforms.stain import StainReference  # PyTorch: only when there is one

        try:
            values["stain"] = StainReference.from_dict(pre["stain"]).to_dict()
        except ValueError as exc:
            raise CheckpointError(f"preprocessing.stain: {exc}") from None
    return values


def _probe(bundle: Bundle) -> None:
    """Build the model and run 2 patches through it: one finite logit each, or refuse.

    Building initialises layers from torch's global random generator before the weights are
    loaded: it runs on a forked generator, so loading a checkpoint (e.g. from a callback in the
    middle of a training run) never changes what comes after it."""
    import torch

    with torch.random.fork_rng(devices=[]):
        _run_probe(bundle)


def _run_probe(bundle: Bundle) -> None:
    import torch

    model = bundle.build_model()
    size = bundle.preprocessing.input_size
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 96, 96, 3), dtype=torch.uint8, generator=g)
    try:
        with torch.inference_mode():
            out = model(bundle.preprocessing(x))
    except Exception as exc:  # any layer can refuse a size it cannot take
        raise CheckpointError(
            f"preprocessing.input_size: {bundle.arch} cannot run {size}x{size} patches "
            f"({first_line(exc)})"
        ) from None
    if tuple(out.shape) != (2,):
        raise CheckpointError(
            f"{bundle.arch} returns {tuple(out.shape)} for 2 patches, expected one logit each"
        )
    if not bool(torch.isfinite(out).all()):
        raise CheckpointError("state_dict: the model's outputs are not finite (NaN or inf)")
