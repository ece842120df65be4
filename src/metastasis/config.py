"""Training configuration: defaults -> YAML recipe -> command-line flags, frozen once resolved.

The resolved config is written into every run folder as ``config.yaml``; ``metastasis train
--config RUN/config.yaml`` re-runs it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from metastasis.errors import MetastasisError


@dataclass(frozen=True)
class TrainConfig:
    # data
    data: str | None = None  # training data (any supported layout)
    split: str | None = None  # split of `data` to train on (default: train, or the only one)
    val_data: str | None = None  # explicit validation set; else a stratified split of `data`
    val_split: str | None = None
    val_fraction: float = 0.2  # the seed's 80/20 protocol
    cache_dir: str | None = None  # default: $METASTASIS_CACHE or ~/.cache/metastasis
    # model
    model: str = "baseline-cnn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    input_size: int | None = None  # resize patches to this (e.g. 224 for ImageNet backbones)
    mpp: float = 0.972  # microns per pixel of the training patches (PCam/Kaggle: 0.972, 10x)
    # optimisation
    epochs: int = 10
    batch_size: int = 32
    shuffle: bool = True  # False: fixed order (debugging, DDP equivalence checks)
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamw | sgd
    schedule: str = "constant"  # constant | cosine (after linear warm-up) | onecycle
    warmup_epochs: float = 0.0  # cosine: linear warm-up; onecycle: the rising part (default 30%)
    label_smoothing: float = 0.0  # targets y(1 - s) + s/2
    class_balance: str = "none"  # none | loss (positive-class weight n0/n1) | sampler
    ema_decay: float = 0.0  # > 0: validate and save an exponential moving average of the weights
    early_stopping: int = 0  # stop after this many epochs without a better val AUC (0: off)
    augment: str = "flips"  # none | flips (the seed's) | d4 | pathology | strong
    augment_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {hed_scale: 0.1}
    threshold: float = 0.5  # used when threshold_method is fixed
    threshold_method: str = "fixed"  # fixed | youden | sensitivity:0.95 (chosen on validation)
    calibrate: bool = False  # fit a temperature on validation (saved in the checkpoint)
    tta: str = "none"  # none | d4: the final validation and the checkpoint's default
    seed: int = 0
    # hardware (Lightning Fabric)
    accelerator: str = "auto"  # auto | cpu | cuda | mps
    devices: int = 1  # processes per node (DDP when > 1; batch_size is per process)
    num_nodes: int = 1
    strategy: str = "auto"  # Fabric strategy: auto (DDP when several processes), ddp, ...
    precision: str = "32-true"  # 32-true | bf16-mixed | 16-mixed
    num_workers: int | None = None  # DataLoader workers; None: 0 on a CPU, some on a GPU
    threads: int | None = None  # torch intra-op threads (default: all cores)
    eval_batch_size: int | None = None  # validation batch; None: 32 on a CPU, 256 on a GPU
    # experiment tracking (history.csv is always written; see engine/loggers.py)
    loggers: list[str] = field(default_factory=lambda: ["csv"])  # csv | tensorboard | mlflow
    tracking_uri: str | None = None  # MLflow tracking URI; default a local store beside the run
    experiment: str = "metastasis"  # MLflow experiment name
    # output
    out: str | None = None  # default runs/<timestamp>-<model>

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except OSError as exc:
        raise MetastasisError(f"{p}: cannot read config: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise MetastasisError(f"{p}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise MetastasisError(f"{p}: a config must be a mapping of settings")
    return raw


def resolve_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the YAML file, then every override that is not None."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(read_yaml(path))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return build_config(values, source=str(path) if path else "options")


def build_config(values: dict[str, Any], source: str = "config") -> TrainConfig:
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise MetastasisError(
            f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    hints = typing.get_type_hints(TrainConfig)
    return TrainConfig(**{k: _coerce(k, v, hints[k], source) for k, v in values.items()})


def _coerce(name: str, value: Any, hint: Any, source: str) -> Any:
    if value is None:
        return None
    allowed = (
        [a for a in typing.get_args(hint) if a is not type(None)] if _is_union(hint) else [hint]
    )
    target = typing.get_origin(allowed[0]) or allowed[0]
    try:
        if target is dict:
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
        if target is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if target is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
                return value.lower() in ("true", "yes")
            if not isinstance(value, bool):
                raise TypeError
            return value
        if target in (float, str):
            return target(value)
        return value
    except (TypeError, ValueError):
        raise MetastasisError(
            f"{source}: setting {name!r} expects "
            f"{getattr(target, '__name__', target)}, got {value!r}"
        ) from None


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def dump_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
