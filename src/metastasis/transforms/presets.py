"""Preprocessing (what a checkpoint carries) and the training augmentation presets.

Both work on whole batches of uint8 NHWC tensors, on the device the model runs on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from metastasis.errors import MetastasisError

AUGMENT_PRESETS = ("none", "flips")


@dataclass(frozen=True)
class Preprocessing:
    """uint8 NHWC RGB -> float NCHW: rescale to [0, 1], normalise, resize to ``input_size``.

    The seed rescales to [0, 1] only: mean 0, std 1.
    """

    input_size: int = 96
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __call__(self, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected uint8 N x H x W x 3, got {x.dtype} {tuple(x.shape)}")
        out = x.permute(0, 3, 1, 2).to(dtype).div_(255.0)  # channels-last memory, NCHW view
        if self.mean != (0.0, 0.0, 0.0) or self.std != (1.0, 1.0, 1.0):
            mean = torch.tensor(self.mean, dtype=dtype, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(self.std, dtype=dtype, device=x.device).view(1, 3, 1, 1)
            out = out.sub_(mean).div_(std)
        if out.shape[-1] != self.input_size or out.shape[-2] != self.input_size:
            out = F.interpolate(
                out,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=False,
            )
        return out.contiguous(memory_format=torch.channels_last)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        return cls(
            input_size=int(d["input_size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
        )


def random_flips(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each NHWC image left-right and up-down, each with probability 1/2 (the seed's aug)."""
    n = x.shape[0]
    h = torch.rand(n, generator=generator) < 0.5
    v = torch.rand(n, generator=generator) < 0.5
    h, v = h.to(x.device).view(n, 1, 1, 1), v.to(x.device).view(n, 1, 1, 1)
    x = torch.where(h, x.flip(2), x)
    return torch.where(v, x.flip(1), x)


def augment_batch(
    x: torch.Tensor, preset: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    if preset == "none":
        return x
    if preset == "flips":
        return random_flips(x, generator)
    raise MetastasisError(
        f"unknown augmentation preset {preset!r}; known: {', '.join(AUGMENT_PRESETS)}"
    )
