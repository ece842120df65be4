"""Stain normalisation: Macenko and Reinhard on whole uint8 batches, with the reference a
checkpoint carries.

A lab's slides differ from another's in how much haematoxylin and eosin they take up and in the
dyes' exact colours. Normalisation maps every patch to the colours of a reference fitted on the
training patches (`fit_reference`, stored in the checkpoint's `Preprocessing.stain`), so the
model sees the training lab's staining wherever a patch comes from. Both methods run on uint8
N x H x W x 3 batches and return uint8 batches, vectorised over the batch in torch (one 3 x 3
matrix or affine map per patch; no Python loop over patches):

- **Macenko** et al. 2009, "A method for normalizing histology slides for quantitative
  analysis" (ISBI): optical density ``OD = -ln((I + 1) / Io)``, ``Io = 240``; pixels with every
  channel's OD >= ``BETA`` (0.15) are tissue; their two main principal directions span the
  stains' plane; the stain vectors are the directions at the 1st and 99th percentiles of the
  tissue pixels' angle in that plane (haematoxylin: the one with the larger red OD); each
  pixel's two stain concentrations are solved by least squares, scaled so their 99th
  percentile matches the reference's, and mixed back with the reference's stain vectors. As
  in the paper (and torchstain), what is outside the two stains' plane is dropped and glass
  becomes ``Io``. A patch with fewer than ``MIN_TISSUE`` tissue pixels keeps the reference's
  vectors and its own amounts (scale 1); the scale is kept in ``SCALE_RANGE`` so that a nearly
  empty patch is not blown up. The stain vectors and percentiles are estimated on every
  ``SUBSAMPLE``-th row and column (the output uses all pixels).
- **Reinhard** et al. 2001, "Color transfer between images" (IEEE CG&A): each patch in the
  paper's decorrelated l-alpha-beta space (RGB -> LMS -> log10 -> l-alpha-beta) is given the
  reference's per-channel mean and standard deviation.

The reference (`fit_reference`) is fitted on a sample of training patches: Macenko's stain
vectors from their pooled tissue pixels and the median of the patches' 99th-percentile
concentrations; Reinhard's mean of the patches' channel means and standard deviations.
``source`` (`fit_source`): for the patches of one whole slide, one stain estimate from the
slide's tissue replaces the per-patch estimate (patches of a slide share one staining).
torchstain (Macenko, Reinhard, Vahadane) works on one image at a time; the tests check this
module against a per-patch numpy transcription of the papers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

STAIN_METHODS = ("none", "macenko", "reinhard")
IO = 240.0  # Macenko's transmitted light intensity
BETA = 0.15  # OD below which a channel is glass
ALPHA = 1.0  # angle percentile (and 100 - ALPHA) of the stain vectors
MAX_PERCENTILE = 99.0  # the stain amount matched between patch and reference
MIN_TISSUE = 64  # tissue pixels (of the subsample) a patch needs for its own stain vectors
SUBSAMPLE = 2  # every SUBSAMPLE-th row and column estimate the stains
SCALE_RANGE = (0.25, 4.0)  # the per-stain amount scale is clamped here
REFERENCE_PATCHES = 256  # training patches the reference is fitted on

# Reinhard et al. 2001: RGB -> LMS, and log10 LMS -> l-alpha-beta
_RGB_TO_LMS = torch.tensor(
    [[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]],
    dtype=torch.float64,
)
_LMS_TO_LAB = torch.diag(
    torch.tensor([1 / math.sqrt(3), 1 / math.sqrt(6), 1 / math.sqrt(2)], dtype=torch.float64)
) @ torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, -2.0], [1.0, -1.0, 0.0]], dtype=torch.float64)


@dataclass(frozen=True)
class StainReference:
    """What a checkpoint stores of its stain normalisation: the method and its target.

    Macenko: ``matrix`` (haematoxylin and eosin unit OD vectors, 2 x 3) and ``concentration``
    (their 99th-percentile amounts); Reinhard: ``mean`` and ``std`` (l-alpha-beta, 3 each).
    """

    method: str
    matrix: tuple[tuple[float, ...], ...] = ()
    concentration: tuple[float, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in STAIN_METHODS[1:]:
            raise ValueError(f"method: {self.method!r} is not one of macenko, reinhard")
        shapes = {"macenko": {"matrix": (2, 3), "concentration": (2,)}}
        shapes["reinhard"] = {"mean": (3,), "std": (3,)}
        for name, shape in shapes[self.method].items():
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != shape or not np.isfinite(arr).all():
                raise ValueError(f"{name}: expected {shape} finite numbers, got {arr.tolist()}")
        if self.method == "macenko" and min(self.concentration) <= 0:
            raise ValueError(f"concentration: must be positive, got {self.concentration}")
        if self.method == "reinhard" and min(self.std) <= 0:
            raise ValueError(f"std: must be positive, got {self.std}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "matrix": [list(r) for r in self.matrix],
            "concentration": list(self.concentration),
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, d: Any) -> StainReference:
        """The reference of a checkpoint's dict; ``ValueError`` naming the field if bad."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a dict, got {type(d).__name__}")
        try:
            return cls(
                method=str(d.get("method")),
                matrix=tuple(tuple(float(v) for v in row) for row in d.get("matrix", ())),
                concentration=tuple(float(v) for v in d.get("concentration", ())),
                mean=tuple(float(v) for v in d.get("mean", ())),
                std=tuple(float(v) for v in d.get("std", ())),
            )
        except TypeError as exc:
            raise ValueError(f"not numbers ({exc})") from None


@dataclass(frozen=True)
class StainSource:
    """One slide's own staining (`fit_source`), used for all its patches instead of each
    patch's estimate: Macenko's matrix and amounts, or Reinhard's mean and std."""

    values: tuple[tuple[float, ...], ...]


# ---------------------------------------------------------------------------- helpers


def _check(x: torch.Tensor) -> None:
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 N x H x W x 3, got {x.dtype} {tuple(x.shape)}")


def _planar(x: torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float32 N x 3 x (H W) (channels in rows: fast batched 3 x 3
    products)."""
    return x.permute(0, 3, 1, 2).reshape(x.shape[0], 3, -1).float()


def _quantile(v: torch.Tensor, mask: torch.Tensor | None, q: float) -> torch.Tensor:
    """Per row of ``v`` (n x P), the ``q`` quantile (q <= 0.05 or >= 0.95) of the entries
    where ``mask``, linearly interpolated as ``numpy.percentile``: (n,). Only the tail is
    ordered (``topk``), not the whole row; rows without entries give garbage."""
    if q > 0.5:
        return -_quantile(-v, mask, 1 - q)
    p = v.shape[1]
    if mask is not None:
        v = torch.where(mask, v, torch.full_like(v, math.inf))
        count = mask.sum(1).clamp_min(1)
    else:
        count = torch.full((v.shape[0],), p, device=v.device)
    k = min(p, math.ceil(q * (p - 1)) + 2)
    s = v.topk(k, dim=1, largest=False, sorted=True).values
    pos = q * (count - 1).to(v.dtype)
    lo = pos.floor().long().clamp_max(k - 1)
    hi = pos.ceil().long().clamp_max(k - 1)
    a, b = s.gather(1, lo.view(-1, 1))[:, 0], s.gather(1, hi.view(-1, 1))[:, 0]
    return a + (b - a) * (pos - lo.to(v.dtype))


def optical_density(x: torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float32 N x 3 x (H W): ``-ln((I + 1) / Io)``."""
    return _planar(x).add_(1.0).div_(IO).log_().neg_()


# ---------------------------------------------------------------------------- Macenko


def macenko_stains(od: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per patch of ``od`` (n x 3 x P): its stain vectors (n x 2 x 3, haematoxylin first,
    unit) and whether it had enough tissue for them (n,)."""
    tissue = (od >= BETA).all(dim=1)  # n x P
    w = tissue.to(od.dtype).unsqueeze(1)
    count = w.sum(2)  # n x 1
    mu = (od * w).sum(2, keepdim=True) / count.clamp_min(1).unsqueeze(2)
    d = (od - mu) * w
    cov = d @ d.transpose(1, 2) / (count - 1).clamp_min(1).unsqueeze(2)
    cov = cov.double() + 1e-9 * torch.eye(3, dtype=torch.float64, device=od.device)
    _, vecs = torch.linalg.eigh(cov)  # ascending: columns 1, 2 span the stains' plane
    plane = vecs[:, :, 1:3].to(od.dtype)  # n x 3 x 2
    first = plane[:, :, 1:2]  # the main direction, made to point into positive OD
    plane = torch.cat([plane[:, :, :1], first * torch.sign(first.sum(1, keepdim=True) + 1e-12)], 2)
    t = plane.transpose(1, 2) @ od  # n x 2 x P
    phi = torch.atan2(t[:, 1], t[:, 0])
    ends = torch.stack(
        [_quantile(phi, tissue, ALPHA / 100), _quantile(phi, tissue, 1 - ALPHA / 100)], 1
    )  # n x 2 (lo, hi)
    v = (plane @ torch.stack([torch.cos(ends), torch.sin(ends)], 1)).transpose(1, 2)
    h_first = (v[:, 0, 0] > v[:, 1, 0]).view(-1, 1, 1)  # haematoxylin: the larger red OD
    stains = torch.where(h_first, v, v.flip(1))
    stains = stains / stains.norm(dim=2, keepdim=True).clamp_min(1e-12)
    ok = (count[:, 0] >= MIN_TISSUE) & torch.isfinite(stains).all(2).all(1)
    return stains, ok


def _concentration_max(od: torch.Tensor, stains: torch.Tensor) -> torch.Tensor:
    """The 99th percentile of each stain's least-squares amount over all pixels: n x 2."""
    conc = torch.linalg.pinv(stains).transpose(1, 2) @ od  # n x 2 x P
    q = MAX_PERCENTILE / 100
    return torch.stack([_quantile(conc[:, k], None, q) for k in range(2)], dim=1)


def _subsample(x: torch.Tensor) -> torch.Tensor:
    """Every other row and column (a quarter of the pixels): what the stains are estimated on."""
    return x[:, ::SUBSAMPLE, ::SUBSAMPLE]


def _macenko(x: torch.Tensor, ref: StainReference, source: StainSource | None) -> torch.Tensor:
    n = x.shape[0]
    ref_m = torch.tensor(ref.matrix, dtype=torch.float32, device=x.device)
    if source is None:
        sub = optical_density(_subsample(x))
        stains, ok = macenko_stains(sub)
        # too little tissue: the reference's vectors, and the patch keeps its amounts
        stains = torch.where(ok.view(-1, 1, 1), stains, ref_m.expand_as(stains))
        cmax = _concentration_max(sub, stains)
    else:
        vals = torch.tensor(source.values, dtype=torch.float32, device=x.device)
        stains, cmax = vals[:2].expand(n, 2, 3), vals[2, :2].expand(n, 2)
        ok = torch.ones(n, dtype=torch.bool, device=x.device)
    ref_c = torch.tensor(ref.concentration, dtype=torch.float32, device=x.device)
    scale = (ref_c / cmax.clamp_min(1e-6)).clamp(*SCALE_RANGE)
    scale = torch.where(ok.view(-1, 1), scale, torch.ones_like(scale))
    # row vectors: od' = od @ pinv(stains) @ diag(scale) @ ref_m; here on columns
    mix = (torch.linalg.pinv(stains) * scale.unsqueeze(1) @ ref_m).transpose(1, 2)
    return torch.exp((mix @ optical_density(x)).neg_()).mul_(IO / 255.0)


# ---------------------------------------------------------------------------- Reinhard


def _log_lms(x: torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W x 3 -> log10 LMS, float32 N x 3 x (H W)."""
    rgb = _planar(x).add_(1.0).div_(256.0)
    return torch.log10((_RGB_TO_LMS.float().to(x.device) @ rgb).clamp_min_(1e-6))


def to_lab(x: torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float32 N x 3 x (H W) in Reinhard's l-alpha-beta."""
    return _LMS_TO_LAB.float().to(x.device) @ _log_lms(x)


def _reinhard(x: torch.Tensor, ref: StainReference, source: StainSource | None) -> torch.Tensor:
    log_lms = _log_lms(x)
    to_lab_m = _LMS_TO_LAB.float().to(x.device)
    lab = to_lab_m @ log_lms
    if source is None:
        sd, mu = torch.std_mean(lab, dim=2, keepdim=True)
    else:
        vals = torch.tensor(source.values, dtype=torch.float32, device=x.device)
        mu, sd = vals[0].view(1, 3, 1), vals[1].view(1, 3, 1)
    ref_mu = torch.tensor(ref.mean, dtype=torch.float32, device=x.device).view(1, 3, 1)
    ref_sd = torch.tensor(ref.std, dtype=torch.float32, device=x.device).view(1, 3, 1)
    scale = (ref_sd / sd.clamp_min(1e-6)).clamp(*SCALE_RANGE)  # n x 3 x 1
    # lab' = (lab - mu) * scale + ref_mu, folded with the way back to log LMS: one affine map
    from_lab_m = torch.linalg.inv(_LMS_TO_LAB).float().to(x.device)
    a = from_lab_m @ (scale * to_lab_m)  # n x 3 x 3
    b = from_lab_m @ (ref_mu - mu * scale)  # n x 3 x 1
    lms = torch.exp((a @ log_lms + b).mul_(math.log(10.0)))
    rgb = torch.linalg.inv(_RGB_TO_LMS).float().to(x.device) @ lms
    return rgb.mul_(256.0 / 255.0).sub_(1.0 / 255.0)


# ---------------------------------------------------------------------------- the API


def normalise_float(
    x: torch.Tensor, ref: StainReference, source: StainSource | None = None
) -> torch.Tensor:
    """``x`` (uint8 N x H x W x 3) in ``ref``'s staining, as float32 N x 3 x H x W in [0, 1]
    (what `Preprocessing` goes on with), per patch or with one slide's ``source``."""
    _check(x)
    n, h, w, _ = x.shape
    if n == 0:
        return x.permute(0, 3, 1, 2).float()
    method = _macenko if ref.method == "macenko" else _reinhard
    out = method(x, ref, source)
    return out.clamp_(0, 1).view(n, 3, h, w)


def normalise(
    x: torch.Tensor, ref: StainReference, source: StainSource | None = None
) -> torch.Tensor:
    """``x`` (uint8 N x H x W x 3) in ``ref``'s staining, uint8 N x H x W x 3, per patch (or
    with one slide's ``source`` for all patches)."""
    out = normalise_float(x, ref, source).mul_(255.0).round_().to(torch.uint8)
    return out.permute(0, 2, 3, 1).contiguous()


def _pooled(x: torch.Tensor) -> torch.Tensor:
    """All patches as one image: 1 x (N H W) x 1 x 3."""
    return x.reshape(1, -1, 1, 3)


def fit_reference(method: str, patches: np.ndarray | torch.Tensor) -> StainReference:
    """The reference of ``method`` fitted on training ``patches`` (uint8 N x H x W x 3)."""
    if method not in STAIN_METHODS[1:]:
        raise ValueError(f"stain normalisation {method!r} is not one of macenko, reinhard")
    x = torch.as_tensor(np.asarray(patches))
    _check(x)
    if method == "reinhard":
        sd, mu = torch.std_mean(to_lab(x), dim=2)
        mean, std = mu.mean(0).double().tolist(), sd.mean(0).double().tolist()
        return StainReference("reinhard", mean=tuple(mean), std=tuple(std))
    od = optical_density(_pooled(_subsample(x)))
    stains, ok = macenko_stains(od)
    if not bool(ok.all()):
        raise ValueError("too little tissue in the patches to fit Macenko's stain vectors")
    per_patch = optical_density(_subsample(x))
    cmax = _concentration_max(per_patch, stains.expand(x.shape[0], 2, 3)).median(0).values
    matrix = tuple(tuple(float(v) for v in row) for row in stains[0].double().tolist())
    return StainReference("macenko", matrix=matrix, concentration=tuple(cmax.double().tolist()))


def fit_source(ref: StainReference, patches: np.ndarray | torch.Tensor) -> StainSource:
    """One slide's staining from its tissue ``patches`` (uint8 N x H x W x 3), estimated as
    `fit_reference` estimates the reference: what `normalise` then uses for every patch."""
    x = torch.as_tensor(np.asarray(patches))
    _check(x)
    fitted = fit_reference(ref.method, x)
    if ref.method == "reinhard":
        return StainSource((fitted.mean, fitted.std))
    return StainSource((*fitted.matrix, (*fitted.concentration, 0.0)))


def sample_reference(
    method: str, images: Any, indices: np.ndarray, seed: int, n: int = REFERENCE_PATCHES
) -> StainReference | None:
    """The reference fitted on ``n`` of the training ``images`` (an N x H x W x 3 uint8 array,
    e.g. a cached split's), drawn by ``seed`` from ``indices``; None for method ``none``."""
    if method == "none":
        return None
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(np.asarray(indices), size=min(n, len(indices)), replace=False))
    return fit_reference(method, np.stack([np.asarray(images[int(i)]) for i in pick]))
