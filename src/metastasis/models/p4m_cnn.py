"""A P4M group-equivariant CNN (Cohen & Welling 2016), the method of the PCam paper (Veeling 2018).

Every filter is used in all 8 poses of the dihedral group D4 (rotations by 90 degrees, with and
without a mirror flip), with the weights tied across poses, so a feature map has 8 channels per
learned filter, one per pose. Rotating or flipping the input rotates or flips every feature map
and permutes its 8 pose channels; pooling over the poses and over space at the end makes the
logit **invariant**: the 8 dihedral views of a patch give the same output (to float rounding),
which makes 8-view test-time augmentation (``tta: d4``) free.

Plain PyTorch, no extra dependency: the pose-expanded weight of a layer is built from the learned
weight on every call (a gather and 8 exact rotations/flips of a few thousand numbers: microseconds
beside the convolution), then one ``conv2d`` computes all poses. Exact equivariance needs
symmetric layers: 3 x 3 convolutions with padding 1, batch norm whose statistics are shared by
the 8 poses of a filter, and 2 x 2 max pooling on maps of even size (so ``in_size`` must be a
multiple of 2 ** len(widths): 96 with the 4 default stages).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from metastasis.models.registry import register_model

ORDER = 8  # |D4|: element g = 4 * flip + quarter_turns


def transform(x: torch.Tensor, g: int) -> torch.Tensor:
    """The group element ``g`` acting on the last two (spatial) axes: an optional left-right
    flip, then ``g % 4`` quarter turns (exact: a permutation of the values)."""
    if g >= 4:
        x = x.flip(-1)
    turns = g % 4  # torch.rot90's quarter turns, in flips and transposes (ONNX has no rot90)
    if turns == 1:
        return x.flip(-1).transpose(-2, -1)
    if turns == 2:
        return x.flip((-2, -1))
    if turns == 3:
        return x.transpose(-2, -1).flip(-1)
    return x


@functools.cache
def cayley() -> tuple[tuple[int, ...], ...]:
    """``cayley()[a][b]`` is the element c with transform(transform(x, b), a) == transform(x, c),
    found by acting on an asymmetric 3 x 3 grid (no hand-written group algebra to get wrong)."""
    grid = torch.arange(9.0).reshape(3, 3)
    poses = [transform(grid, g) for g in range(ORDER)]
    table = []
    for a in range(ORDER):
        row = []
        for b in range(ORDER):
            both = transform(transform(grid, b), a)
            row.append(next(c for c in range(ORDER) if torch.equal(both, poses[c])))
        table.append(tuple(row))
    return tuple(table)


def inverse(g: int) -> int:
    return cayley()[g].index(0)


def pose_permutation() -> torch.Tensor:
    """Row g: for each input pose k, the learned pose slot the filter of output pose g reads,
    g^-1 k (the group correlation's filter transformed by g)."""
    table = cayley()
    return torch.tensor([[table[inverse(g)][k] for k in range(ORDER)] for g in range(ORDER)])


class LiftingConv(nn.Module):
    """Image (C channels) -> pose feature maps (out x 8 channels, ordered filter-major)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.stack([transform(self.weight, g) for g in range(ORDER)], 1)
        c_out = self.weight.shape[0]
        bias = self.bias.repeat_interleave(ORDER)
        return F.conv2d(x, w.reshape(c_out * ORDER, *self.weight.shape[1:]), bias, 1, self.padding)


class GroupConv(nn.Module):
    """Pose feature maps (in x 8) -> pose feature maps (out x 8): the P4M group correlation."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3) -> None:
        super().__init__()
        # stored 4-D, (out, in x pose, k, k), so that channels-last memory applies to it
        self.weight = nn.Parameter(torch.empty(c_out, c_in * ORDER, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        nn.init.normal_(self.weight, std=math.sqrt(2.0 / (c_in * ORDER * kernel * kernel)))
        self.padding = kernel // 2
        self.register_buffer("perm", pose_permutation(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c_out, c_in_poses, k, _ = self.weight.shape
        weight = self.weight.reshape(c_out, c_in_poses // ORDER, ORDER, k, k)
        perm: torch.Tensor = self.perm  # type: ignore[assignment]
        w = torch.stack([transform(weight[:, :, perm[g]], g) for g in range(ORDER)], 1)
        bias = self.bias.repeat_interleave(ORDER)
        w = w.reshape(c_out * ORDER, c_in_poses, k, k)
        return F.conv2d(x, w, bias, 1, self.padding)


class PoseBatchNorm(nn.Module):
    """Batch norm with one mean, variance, scale and shift per filter, shared by its 8 poses."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return self.norm(x.reshape(n, c // ORDER, ORDER, h, w)).reshape(n, c, h, w)


class P4MCNN(nn.Module):
    """Stages of (P4M convolution, shared-pose batch norm, ReLU, 2 x 2 max pool); then the mean
    over space and the max over the 8 poses (invariant features), dense ReLU, one logit."""

    def __init__(
        self,
        widths: tuple[int, ...] = (8, 16, 32, 64),
        dense: int = 64,
        dropout: float = 0.0,
        in_size: int = 96,
    ) -> None:
        super().__init__()
        if not widths or in_size % (2 ** len(widths)):
            raise ValueError(
                f"in_size {in_size} must be a multiple of 2 ** {len(widths)} (one halving per "
                "stage) for the model to be exactly rotation-invariant"
            )
        layers: list[nn.Module] = []
        previous = 0
        for width in widths:
            conv = LiftingConv(3, width) if not previous else GroupConv(previous, width)
            layers += [conv, PoseBatchNorm(width), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            previous = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Linear(previous, dense),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(dense, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        n, c, _, _ = f.shape
        pooled = f.mean((2, 3)).reshape(n, c // ORDER, ORDER).amax(2)
        return self.head(pooled).squeeze(1)


@register_model(
    "p4m-cnn",
    description="P4M rotation-equivariant CNN (8-pose tied filters): D4-invariant, TTA for free",
    target_layer="features",  # the last stage's pose maps (6 x 6 at 96 px)
    invariance="d4",
)
def p4m_cnn(
    widths: tuple[int, ...] | list[int] = (8, 16, 32, 64),
    dense: int = 64,
    dropout: float = 0.0,
    in_size: int = 96,
) -> nn.Module:
    """P4M rotation-equivariant CNN (Veeling 2018's method): D4-invariant output."""
    return P4MCNN(widths=tuple(widths), dense=dense, dropout=dropout, in_size=in_size)
