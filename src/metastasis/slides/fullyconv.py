"""The fully convolutional pass: every tile of a block classified in one forward pass.

The seed's CNN (``baseline-cnn``) is three blocks of [3x3 *valid* convolution -> 2x2 max-pool
(stride 2, floor) -> ReLU], then Flatten + Linear(128*10*10 -> dense) + ReLU + Linear(dense -> 1).
On a 96 px patch the last feature map is 10 x 10, so the first Linear is exactly a 10 x 10
convolution (its weight reshaped to ``dense x 128 x 10 x 10``, PyTorch flattens C, H, W) and
the second a 1 x 1 convolution. Run over a block of ``96 + 8k`` px, the convolutions see every
96 px window whose offset is a multiple of 8 (the three pools' total stride): the pooling
pairs of each such window line up with the block's (offsets 8k, 4k, 2k are even at every
pool), so each window's logit is *exactly* the per-tile logit, up to float rounding. Giving
the 10 x 10 head a stride of ``stride / 8`` computes only the windows on the tile grid.

``regularised-cnn`` without its 4th block converts the same way: its BatchNorm is affine in
eval mode, and global average pooling over the 10 x 10 map becomes a 10 x 10 average pool.

So the fully convolutional pass is used when: the architecture is ``baseline-cnn`` or
``regularised-cnn`` (``fourth_block`` off), the checkpoint's input size is the patch size
(96: no resize in preprocessing), and the stride is a multiple of 8. Other models (timm
backbones with padding, strides or global pools of other sizes) are classified tile by tile.
D4 test-time augmentation is exact too: the grid of a square block maps onto itself under
rotations and flips, so each view of the block is classified and its map turned back.

The checkpoint's preprocessing (rescale to [0, 1], then per-channel mean and std) is folded
into the first convolution, which is unpadded, so the converted model takes the block's pixel
values as they are (0-255, as float): ``W' = W / (255 std_c)``, ``b' = b - sum W mean_c /
std_c``. That saves two passes over every block (the rescale and a transposing copy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from metastasis.data.decode import PATCH_SIZE
from metastasis.transforms.augment import d4_inverse, d4_view
from metastasis.transforms.presets import Preprocessing

NET_STRIDE = 8  # the product of the three 2x2 pools
FEATURE_SIDE = 10  # the last feature map of a 96 px patch
FULLY_CONV_ARCHS = ("baseline-cnn", "regularised-cnn")


def fully_conv_reason(arch: str, arch_kwargs: dict[str, Any], input_size: int, stride: int) -> str:
    """Why the fully convolutional pass cannot be used ('' when it can)."""
    if arch not in FULLY_CONV_ARCHS:
        return f"{arch} is not one of {', '.join(FULLY_CONV_ARCHS)}"
    if arch_kwargs.get("fourth_block"):
        return "regularised-cnn with a 4th block"
    if input_size != PATCH_SIZE or int(arch_kwargs.get("in_size", PATCH_SIZE)) != PATCH_SIZE:
        return f"input size {input_size} is not the patch size {PATCH_SIZE}"
    if stride % NET_STRIDE:
        return f"stride {stride} is not a multiple of {NET_STRIDE}"
    return ""


class FullyConvolutional(nn.Module):
    """The converted model: a ``96 + stride * (n - 1)`` px block -> ``n x n`` logits (flat)."""

    def __init__(
        self, model: nn.Module, stride: int, preprocessing: Preprocessing | None = None
    ) -> None:
        """With ``preprocessing``, the model takes raw pixel values (0-255) instead of its
        preprocessed input (see the module notes)."""
        super().__init__()
        step = stride // NET_STRIDE
        features: nn.Module = model.features  # type: ignore[assignment]
        if preprocessing is not None:
            features = fold_preprocessing(features, preprocessing)
        self.features = features
        layers: list[nn.Module] = []
        first = True
        for m in model.head:  # type: ignore[union-attr]
            if isinstance(m, nn.AdaptiveAvgPool2d):
                layers.append(nn.AvgPool2d(FEATURE_SIDE, stride=step))
                first = False
            elif isinstance(m, nn.Linear):
                if first:  # Flatten + Linear on the 10 x 10 map = a 10 x 10 convolution
                    c = m.in_features // (FEATURE_SIDE * FEATURE_SIDE)
                    conv = nn.Conv2d(c, m.out_features, FEATURE_SIDE, stride=step)
                    weight = m.weight.detach().reshape(m.out_features, c, FEATURE_SIDE, -1)
                    first = False
                else:
                    conv = nn.Conv2d(m.in_features, m.out_features, 1)
                    weight = m.weight.detach().reshape(m.out_features, m.in_features, 1, 1)
                conv.weight = nn.Parameter(weight.clone())
                conv.bias = nn.Parameter(m.bias.detach().clone())
                layers.append(conv)
            elif isinstance(m, nn.ReLU):
                layers.append(nn.ReLU())
            # Flatten and Dropout (identity in eval) have no counterpart
        self.head = nn.Sequential(*layers)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).reshape(-1)


def fold_preprocessing(features: nn.Module, preprocessing: Preprocessing) -> nn.Module:
    """A copy of ``features`` whose first (unpadded) convolution takes raw 0-255 pixels."""
    import copy

    features = copy.deepcopy(features)
    first = next(m for m in features.modules() if isinstance(m, nn.Conv2d))
    if first.in_channels != 3 or first.padding not in ((0, 0), 0, "valid"):
        raise ValueError("the first convolution must be unpadded with 3 input channels")
    mean = torch.tensor(preprocessing.mean, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std, dtype=torch.float64).view(1, 3, 1, 1)
    w = first.weight.detach().double()
    bias = first.bias.detach().double() if first.bias is not None else torch.zeros(len(w))
    first.weight = nn.Parameter((w / (255.0 * std)).float())
    first.bias = nn.Parameter((bias - (w * mean / std).sum(dim=(1, 2, 3))).float())
    return features


def raw_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float32 N x 3 x H x W (contiguous), values unchanged."""
    return x.permute(0, 3, 1, 2).float().contiguous()


def block_side(stride: int, n: int) -> int:
    return PATCH_SIZE + stride * (n - 1)


class BlockClassifier:
    """Probabilities of every tile of a block (``n x n``) from the block's pixels.

    ``engine``: an inference engine (``inference.runtime.make_engine``) made for the
    ``FullyConvolutional`` model at this block side; ``preprocessing``: what it takes (a
    ``Preprocessing``, or ``raw_input`` for a model with its preprocessing folded in).
    """

    def __init__(
        self,
        engine: Any,
        preprocessing: Callable[[torch.Tensor], torch.Tensor],
        n: int,
        device: torch.device,
        tta: str = "none",
        temperature: float = 1.0,
    ) -> None:
        self.engine = engine
        self.preprocessing = preprocessing
        self.n = n
        self.device = device
        self.tta = tta
        self.temperature = temperature

    @torch.inference_mode()
    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """``n x n`` logits (before temperature) of a ``side x side x 3`` uint8 block."""
        x = torch.from_numpy(np.require(pixels, np.uint8, ["C", "W"]))[None].to(self.device)
        if self.tta == "d4":
            maps = []
            for k in range(8):
                out = self.engine(self.preprocessing(d4_view(x, k).contiguous())).float()
                maps.append(d4_inverse(out.reshape(1, self.n, self.n, 1), k))
            out = torch.stack(maps).mean(0)
        else:
            out = self.engine(self.preprocessing(x)).float()
        return out.reshape(self.n, self.n).cpu().numpy()

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        logits = self.logits(pixels) / self.temperature
        return 1.0 / (1.0 + np.exp(-logits))
