"""The original project's CNN, layer for layer.

Keras original: Conv2D(32, 3, relu) -> MaxPool -> Conv2D(64, 3, relu) -> MaxPool ->
Conv2D(128, 3, relu) -> MaxPool -> Flatten -> Dense(128, relu) -> Dense(1, sigmoid).

Two choices keep it the same function while making it faster or closer to Keras:
* max-pooling is applied before the ReLU: ReLU is monotonic, so max(relu(x)) == relu(max(x)),
  and the ReLU then runs on a quarter of the values;
* weights start as in Keras (Glorot-uniform, zero bias), not PyTorch's default.
The sigmoid lives in the loss (BCE with logits) and in prediction, so the model returns logits.
"""

from __future__ import annotations

import torch
from torch import nn

from metastasis.models.registry import register_model


class BaselineCNN(nn.Module):
    def __init__(self, dense: int = 128, dropout: float = 0.0, in_size: int = 96) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = 3, in_size
        for width in (32, 64, 128):
            layers += [nn.Conv2d(channels, width, 3), nn.MaxPool2d(2), nn.ReLU(inplace=True)]
            channels, size = width, (size - 2) // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * size * size, dense),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(dense, 1),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


@register_model(
    "baseline-cnn",
    description="The seed's 3-layer CNN (32-64-128, dense 128)",
    target_layer="features",  # the last block's 10 x 10 map (after its ReLU)
)
def baseline_cnn(dense: int = 128, dropout: float = 0.0, in_size: int = 96) -> nn.Module:
    """The seed's 3-layer CNN (32-64-128, dense 128)."""
    return BaselineCNN(dense=dense, dropout=dropout, in_size=in_size)
