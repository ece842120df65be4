"""A tiny ViT (timm ViT-Ti shape, smaller) that stands in for a foundation model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TINY = "timm:vit_tiny_patch16_224"
TINY_KWARGS: dict[str, Any] = {
    "img_size": 32,
    "patch_size": 8,
    "depth": 2,
    "embed_dim": 48,
    "num_heads": 2,
    "num_classes": 0,
}


def save_tiny_vit(path: Path, seed: int) -> Path:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY_KWARGS)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path
