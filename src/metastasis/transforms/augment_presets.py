"""Augmentation presets: what each named preset does (`AugmentSpec`), and a preset with
overrides (`augment_spec`). Plain values only, no torch: the training options (`config.py`) and
the command line read the preset names from here; `augment.py` applies them to batches.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from metastasis.errors import MetastasisError


@dataclass(frozen=True)
class AugmentSpec:
    """What a preset does; every strength 0 (and ``d4``/``flips`` False) is the identity."""

    flips: bool = False  # the seed's random left-right and up-down flips
    d4: bool = False  # flips plus transposes: all 8 dihedral views
    hed_scale: float = 0.0  # per-stain factor U(1 - s, 1 + s)
    hed_shift: float = 0.0  # per-stain shift U(-b, b) of the stain's optical density
    stain_vectors: float = 0.0  # per-patch N(0, v) change of each stain's colour (unit OD vector)
    gamma: float = 0.0  # scanner-like gamma: rgb ** exp(U(-g, g)) per patch
    brightness: float = 0.0  # factor U(1 - b, 1 + b)
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0  # shift U(-h, h) of a full turn; at most 0.5
    translate: float = 0.0  # fraction of the side, each axis
    scale: float = 0.0  # zoom U(1 - s, 1 + s)
    affine_p: float = 0.5  # share of patches that get translate/scale
    blur_p: float = 0.0  # share of patches blurred, sigma U(0.1, blur_sigma)
    blur_sigma: float = 1.0
    noise_p: float = 0.0  # share of patches with additive Gaussian noise
    noise_std: float = 0.0  # on the [0, 1] scale

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and (v < 0 or not math.isfinite(v)):
                raise MetastasisError(f"augmentation setting {f.name} must be >= 0, got {v}")
        for name in ("brightness", "contrast", "saturation", "hed_scale", "scale", "gamma"):
            if getattr(self, name) >= 1:
                raise MetastasisError(f"augmentation setting {name} must be < 1")
        if self.hue > 0.5:
            raise MetastasisError(f"augmentation setting hue must be <= 0.5, got {self.hue}")
        for name in ("affine_p", "blur_p", "noise_p"):
            if getattr(self, name) > 1:
                raise MetastasisError(f"augmentation setting {name} must be <= 1")

    @property
    def colour(self) -> bool:
        return any((self.brightness, self.contrast, self.saturation, self.hue))

    @property
    def needs_float(self) -> bool:
        return bool(
            self.hed_scale
            or self.hed_shift
            or self.stain_vectors
            or self.gamma
            or self.colour
            or ((self.translate or self.scale) and self.affine_p)
            or (self.blur_p and self.blur_sigma)
            or (self.noise_p and self.noise_std)
        )


PRESETS: dict[str, AugmentSpec] = {
    "none": AugmentSpec(),
    "flips": AugmentSpec(flips=True),
    "d4": AugmentSpec(d4=True),
    # D4 + light stain and colour variation: what scanners and staining labs differ by.
    "pathology": AugmentSpec(
        d4=True,
        hed_scale=0.05,
        hed_shift=0.05,
        brightness=0.1,
        contrast=0.1,
        saturation=0.1,
        hue=0.02,
    ),
    # D4 + stain variation of the size seen between labs (issue 21, benchmarks/stain_shift.py):
    # each stain's amount x U(0.6, 1.4) and shifted, the stains' colours varied, a scanner gamma.
    "stain": AugmentSpec(
        d4=True,
        hed_scale=0.4,
        hed_shift=0.05,
        stain_vectors=0.05,
        gamma=0.2,
        brightness=0.1,
        contrast=0.1,
        saturation=0.1,
        hue=0.02,
    ),
    # Everything: stronger stain/colour changes, small shifts and zooms, some blur and noise.
    "strong": AugmentSpec(
        d4=True,
        hed_scale=0.1,
        hed_shift=0.1,
        brightness=0.2,
        contrast=0.2,
        saturation=0.2,
        hue=0.05,
        translate=0.05,
        scale=0.1,
        affine_p=0.5,
        blur_p=0.1,
        blur_sigma=1.0,
        noise_p=0.1,
        noise_std=0.02,
    ),
}
AUGMENT_PRESETS = tuple(PRESETS)


def augment_spec(preset: str, overrides: dict[str, Any] | None = None) -> AugmentSpec:
    """The named preset, with ``overrides`` (e.g. ``{"hed_scale": 0.1}``) applied on top."""
    if preset not in PRESETS:
        raise MetastasisError(
            f"unknown augmentation preset {preset!r}; known: {', '.join(AUGMENT_PRESETS)}"
        )
    overrides = overrides or {}
    known = {f.name: f.type for f in dataclasses.fields(AugmentSpec)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise MetastasisError(
            f"unknown augmentation setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    values: dict[str, Any] = {
        k: _setting(k, known[k] in (bool, "bool"), v) for k, v in overrides.items()
    }
    return dataclasses.replace(PRESETS[preset], **values)


_SWITCH_WORDS = {"true": True, "yes": True, "on": True, "1": True}
_SWITCH_WORDS |= {"false": False, "no": False, "off": False, "0": False}


def _setting(name: str, switch: bool, value: Any) -> bool | float:
    """One override as its field's type; strings (from YAML or a command line) are parsed, so
    ``"false"`` switches off (``bool("false")`` would be True)."""
    if switch:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _SWITCH_WORDS:
            return _SWITCH_WORDS[value.strip().lower()]
        raise MetastasisError(f"augmentation setting {name} must be true or false, got {value!r}")
    if not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    raise MetastasisError(f"augmentation setting {name} must be a number, got {value!r}")
