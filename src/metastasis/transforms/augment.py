"""Training augmentation on whole batches: uint8 N x H x W x 3 in, uint8 N x H x W x 3 out.

Every random choice is drawn per patch, from the ``generator`` passed in (so a resumed run draws
the same numbers), and every step is vectorised over the batch:

- **D4**: the 8 symmetries of the square (4 rotations x optional flip). Pathology has no "up", so
  all 8 views of a patch are equally valid. Drawn as 3 independent coin flips (transpose,
  left-right, up-down), which gives each of the 8 elements probability 1/8. Pure uint8 copies.
- **HED stain jitter** (Tellez et al. 2018, "Whole-slide mitosis detection in H&E breast
  histology using PHH3 as a reference to train distilled stain-invariant convolutional networks"):
  the image is taken to optical density, unmixed into haematoxylin, eosin and DAB with
  scikit-image's Ruifrok-Johnston matrix (``skimage.color.hed_from_rgb``), each stain is scaled
  by ``U(1 - s, 1 + s)`` and shifted by ``U(-b, b)`` (in optical-density units, natural log, as
  in Tellez' "HED-light" s = b = 0.05), and mixed back. No library offers this on batches
  (scikit-image's ``rgb2hed`` is one numpy image at a time, and since 0.19 it divides optical
  density by -log(1e-6) = 13.8, which would make a shift of 0.05 thirteen times stronger), so it
  is written here; the tests check it against ``skimage.color.rgb2hed``/``hed2rgb``.
  ``stain_vectors`` also varies the stains' colours (random stain matrices: each stain's unit
  optical-density vector plus N(0, v) noise, renormalised, per patch: another lab's dyes), and
  ``gamma`` raises RGB to ``exp(U(-g, g))`` per patch (a scanner's tone curve). The ``stain``
  preset covers the shifts of ``benchmarks/stain_shift.py`` (stain amounts 0.65-1.4x).
- **Colour jitter**: brightness, contrast, saturation and hue, each drawn per patch as in
  ``torchvision.transforms.ColorJitter``. Saturation and hue are one 3 x 3 colour matrix per patch
  (hue rotates the chroma plane of YIQ, a linear stand-in for HSV's hue wheel). kornia's
  per-sample ``ColorJitter`` gives the same kind of result but took 29 ms per batch of 64 on this
  2-core CPU against about 2 ms here, which would have cost a quarter of a training step.
- **Translation and scale** (``kornia.augmentation.RandomAffine``, reflection padding) and
  **Gaussian blur** (``kornia.augmentation.RandomGaussianBlur``) and additive **Gaussian noise**.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch

# The presets are declared (torch-free) in augment_presets.py; re-exported here.
from metastasis.transforms.augment_presets import AUGMENT_PRESETS as AUGMENT_PRESETS
from metastasis.transforms.augment_presets import PRESETS as PRESETS
from metastasis.transforms.augment_presets import AugmentSpec as AugmentSpec
from metastasis.transforms.augment_presets import augment_spec as augment_spec

# scikit-image's Ruifrok & Johnston stain vectors (skimage.color.rgb_from_hed), rows H, E, DAB.
RGB_FROM_HED = torch.tensor(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64
)
HED_FROM_RGB = torch.linalg.inv(RGB_FROM_HED)
_MIN_RGB = 1e-6  # scikit-image clips RGB here before the log
_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


# ---------------------------------------------------------------------------- dihedral group


def d4_view(x: torch.Tensor, k: int) -> torch.Tensor:
    """View ``k`` (0-7) of a batch: rotate by ``k % 4`` quarter turns, then flip left-right if
    ``k >= 4``. Works on NHWC (dims 1, 2) images; ``d4_inverse(d4_view(x, k), k) == x``."""
    if not 0 <= k < 8:
        raise ValueError(f"D4 view must be 0-7, got {k}")
    y = torch.rot90(x, k % 4, dims=(1, 2))
    return y.flip(2) if k >= 4 else y


def d4_inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    """Undo ``d4_view(., k)`` (for maps, e.g. Grad-CAM of a TTA view)."""
    if not 0 <= k < 8:
        raise ValueError(f"D4 view must be 0-7, got {k}")
    y = x.flip(2) if k >= 4 else x
    return torch.rot90(y, -(k % 4), dims=(1, 2))


def _coins(
    n: int, p: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    return (torch.rand(n, generator=generator) < p).to(device)


def random_flips(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each NHWC image left-right and up-down, each with probability 1/2 (the seed's aug)."""
    n = x.shape[0]
    h = _coins(n, 0.5, generator, x.device).view(n, 1, 1, 1)
    v = _coins(n, 0.5, generator, x.device).view(n, 1, 1, 1)
    x = torch.where(h, x.flip(2), x)
    return torch.where(v, x.flip(1), x)


def random_d4(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One of the 8 dihedral views per NHWC image, uniformly (needs square images)."""
    if x.shape[1] != x.shape[2]:
        raise ValueError(f"D4 augmentation needs square images, got {tuple(x.shape[1:3])}")
    n = x.shape[0]
    t = _coins(n, 0.5, generator, x.device).view(n, 1, 1, 1)
    x = torch.where(t, x.transpose(1, 2), x)
    return random_flips(x, generator)


# ---------------------------------------------------------------------------- colour


def _uniform(
    n: int, low: float, high: float, generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return (low + (high - low) * u).to(device=like.device, dtype=like.dtype)


def hed_jitter(
    x: torch.Tensor,
    scale: float,
    shift: float,
    generator: torch.Generator | None = None,
    vectors: float = 0.0,
) -> torch.Tensor:
    """Tellez' HED augmentation on float NCHW RGB in [0, 1] (returned unclamped).

    Per patch and stain: ``s' = s * U(1 - scale, 1 + scale) + U(-shift, shift)``, where ``s`` is
    the stain's optical density (``-ln(rgb) @ hed_from_rgb``, which is scikit-image's
    ``rgb2hed`` times -ln(1e-6), before its clip at 0). With ``vectors`` > 0 the stains are
    mixed back with their colours changed (each row of ``RGB_FROM_HED`` plus N(0, vectors),
    renormalised, per patch). The whole map is affine in optical density, so it is one 3 x 3
    matrix and offset per patch.
    """
    n = x.shape[0]
    alpha = _uniform(3 * n, 1 - scale, 1 + scale, generator, x).view(n, 3)
    beta = _uniform(3 * n, -shift, shift, generator, x).view(n, 3)
    hed_from_rgb = HED_FROM_RGB.to(device=x.device, dtype=x.dtype)
    rgb_from_hed: torch.Tensor = RGB_FROM_HED.to(device=x.device, dtype=x.dtype)
    if vectors:
        noise = torch.randn(n, 3, 3, generator=generator, dtype=torch.float64) * vectors
        rows = (RGB_FROM_HED + noise).clamp_min(1e-3)
        rows = rows / rows.norm(dim=2, keepdim=True) * RGB_FROM_HED.norm(dim=1).view(1, 3, 1)
        rgb_from_hed = rows.to(device=x.device, dtype=x.dtype)  # (n, 3, 3)
    # Row-vector convention (as scikit-image): od' = od @ H @ diag(alpha) @ R + beta @ R
    mix = hed_from_rgb.unsqueeze(0) * alpha.unsqueeze(1) @ rgb_from_hed  # (n, 3, 3)
    offset = (beta.unsqueeze(1) @ rgb_from_hed).view(n, 3)  # (n, 3)
    od = torch.log(x.clamp_min(_MIN_RGB)).neg_()  # (n, 3, h, w)
    od = torch.einsum("nchw,ncd->ndhw", od, mix) + offset.view(n, 3, 1, 1)
    return torch.exp(od.neg_())


def gamma_jitter(
    x: torch.Tensor, gamma: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``x ** exp(U(-gamma, gamma))`` per patch, on float NCHW RGB in [0, 1]."""
    n = x.shape[0]
    g = torch.exp(_uniform(n, -gamma, gamma, generator, x)).view(n, 1, 1, 1)
    return x.clamp_min(0).pow(g)


def colour_jitter(
    x: torch.Tensor,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-patch brightness, contrast, saturation and hue jitter on float NCHW RGB in [0, 1]."""
    n = x.shape[0]
    gray_w = torch.tensor(_GRAY, device=x.device, dtype=x.dtype)
    if brightness:
        b = _uniform(n, 1 - brightness, 1 + brightness, generator, x)
        x = (x * b.view(n, 1, 1, 1)).clamp_(0, 1)
    if contrast:
        c = _uniform(n, 1 - contrast, 1 + contrast, generator, x).view(n, 1, 1, 1)
        mean = torch.einsum("nchw,c->n", x, gray_w).view(n, 1, 1, 1) / (x.shape[2] * x.shape[3])
        x = (c * x + (1 - c) * mean).clamp_(0, 1)
    if saturation or hue:
        eye = torch.eye(3, device=x.device, dtype=x.dtype)
        s = _uniform(n, 1 - saturation, 1 + saturation, generator, x).view(n, 1, 1)
        sat = s * eye + (1 - s) * gray_w.view(1, 1, 3)  # out_c = s x_c + (1 - s) gray
        theta = _uniform(n, -hue, hue, generator, x) * (2 * math.pi)
        cos, sin = torch.cos(theta), torch.sin(theta)
        rot = torch.zeros(n, 3, 3, device=x.device, dtype=x.dtype)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
        yiq = _RGB_TO_YIQ.to(device=x.device, dtype=x.dtype)
        rgb = _YIQ_TO_RGB.to(device=x.device, dtype=x.dtype)
        m = rgb @ rot @ yiq @ sat  # (n, 3, 3), acting on column vectors
        x = torch.einsum("ndc,nchw->ndhw", m, x).clamp_(0, 1)
    return x


# ---------------------------------------------------------------------------- the pipeline


@contextlib.contextmanager
def _global_rng_from(generator: torch.Generator | None) -> Iterator[None]:
    """kornia draws its parameters from torch's global CPU generator: inside this block that is
    seeded from ``generator`` (and restored after), so the whole pipeline follows ``generator``
    and leaves the global stream as it was. With no ``generator``, the global stream is used."""
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield


class Augmenter:
    """Applies an :class:`AugmentSpec` to uint8 NHWC batches (on the batch's device)."""

    def __init__(self, spec: AugmentSpec) -> None:
        self.spec = spec
        self._affine: Any = None
        self._blur: Any = None
        if (spec.translate or spec.scale) and spec.affine_p:
            import kornia.augmentation as K

            self._affine = K.RandomAffine(
                degrees=0.0,
                translate=(spec.translate, spec.translate) if spec.translate else None,
                scale=(1 - spec.scale, 1 + spec.scale) if spec.scale else None,
                padding_mode="reflection",
                p=spec.affine_p,
            )
        if spec.blur_p and spec.blur_sigma:
            import kornia.augmentation as K

            self._blur = K.RandomGaussianBlur(
                (5, 5), (0.1, max(spec.blur_sigma, 0.1)), p=spec.blur_p
            )

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected uint8 N x H x W x 3, got {x.dtype} {tuple(x.shape)}")
        spec = self.spec
        if spec.d4:
            x = random_d4(x, generator)
        elif spec.flips:
            x = random_flips(x, generator)
        if not spec.needs_float or x.shape[0] == 0:
            return x
        y = x.permute(0, 3, 1, 2).float().div_(255.0)
        if spec.hed_scale or spec.hed_shift or spec.stain_vectors:
            y = hed_jitter(y, spec.hed_scale, spec.hed_shift, generator, spec.stain_vectors).clamp_(
                0, 1
            )
        if spec.gamma:
            y = gamma_jitter(y, spec.gamma, generator)
        if spec.colour:
            y = colour_jitter(
                y, spec.brightness, spec.contrast, spec.saturation, spec.hue, generator
            )
        if self._affine is not None or self._blur is not None:
            with _global_rng_from(generator):
                if self._affine is not None:
                    y = self._affine(y)
                if self._blur is not None:
                    y = self._blur(y)
        if spec.noise_p and spec.noise_std:
            n = y.shape[0]
            mask = _coins(n, spec.noise_p, generator, y.device).view(n, 1, 1, 1)
            noise = torch.randn(y.shape, generator=generator).to(y.device) * spec.noise_std
            y = torch.where(mask, y + noise, y)
        out = y.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8)
        return out.permute(0, 2, 3, 1).contiguous()


def augment_batch(
    x: torch.Tensor,
    preset: str,
    generator: torch.Generator | None = None,
    overrides: dict[str, Any] | None = None,
) -> torch.Tensor:
    """One-off convenience: ``Augmenter(augment_spec(preset, overrides))(x, generator)``."""
    if preset == "none" and not overrides:
        return x
    return Augmenter(augment_spec(preset, overrides))(x, generator)
