"""Preprocessing: what a checkpoint carries to turn uint8 patches into model input.

It works on whole batches of uint8 NHWC tensors, on the device the model runs on. Training
augmentation is in `augment.py`; stain normalisation (``stain``, fitted at training time) in
`stain.py`. ``Preprocessing.__call__`` is the one place patches become model input: training,
validation, ``evaluate``, ``predict``, ``serve`` and per-tile ``slides`` all go through it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from metastasis.data.decode import PCAM_MPP
from metastasis.transforms.stain import StainReference, StainSource, normalise_float


@dataclass(frozen=True)
class Preprocessing:
    """uint8 NHWC RGB -> float NCHW: rescale to [0, 1], normalise, resize to ``input_size``.

    The seed rescales to [0, 1] only: mean 0, std 1. ``mpp`` is the resolution the training
    patches had, in microns per pixel (PCam and Kaggle: 0.972, about 10x); whole-slide inference
    reads slides at it. ``stain``: the stain normalisation's reference (Macenko or Reinhard,
    `transforms.stain`), applied first, to each patch (or, with ``source``, one slide's
    staining estimated from its tissue for all its patches); None: none.
    """

    input_size: int = 96
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    mpp: float = PCAM_MPP
    stain: StainReference | None = None

    def __call__(
        self,
        x: torch.Tensor,
        dtype: torch.dtype = torch.float32,
        source: StainSource | None = None,
    ) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected uint8 N x H x W x 3, got {x.dtype} {tuple(x.shape)}")
        if self.stain is not None:
            out = normalise_float(x, self.stain, source).to(dtype)
        else:
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
        d = asdict(self)
        d["stain"] = None if self.stain is None else self.stain.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        stain = d.get("stain")  # checkpoints before stain normalisation: none
        return cls(
            input_size=int(d["input_size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            mpp=float(d.get("mpp", PCAM_MPP)),  # checkpoints before it was recorded: PCam's
            stain=None if stain is None else StainReference.from_dict(stain),
        )


@dataclass(frozen=True)
class SlidePreprocessing(Preprocessing):
    """``Preprocessing`` that normalises every patch with one slide's stain estimate
    (``source``, from ``stain.fit_source`` on the slide's tissue): what ``metastasis slides``
    runs the tiles of a slide through, so that they share one staining."""

    source: StainSource | None = None

    @classmethod
    def of(cls, base: Preprocessing, source: StainSource | None) -> SlidePreprocessing:
        return cls(base.input_size, base.mean, base.std, base.mpp, base.stain, source)

    def __call__(
        self,
        x: torch.Tensor,
        dtype: torch.dtype = torch.float32,
        source: StainSource | None = None,
    ) -> torch.Tensor:
        return super().__call__(x, dtype, self.source if source is None else source)
