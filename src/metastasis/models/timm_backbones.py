"""ImageNet backbones from timm, one wrapper for all of them, one logit per patch.

``create_model("resnet18", pretrained=True)`` loads timm's ImageNet weights through timm's usual
route (the Hugging Face hub and its local cache). The registered preprocessing normalises with
the weights' ImageNet mean/std and keeps the native 96 px patches; to train or predict at another
size, change ``Preprocessing.input_size`` (it resizes), not the model: every backbone here takes
any input of at least 32 x 32 pixels.

Without a network the hub retries for most of a minute; rather than hang, a pretrained model whose
weights are not in the local cache fails at once with one line when ``HF_HUB_OFFLINE`` is set or
the hub's host does not answer a quick connection attempt.
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlsplit

import torch
from torch import nn

from metastasis.errors import MetastasisError, first_line
from metastasis.models.registry import register_model
from metastasis.transforms.presets import Preprocessing

# name -> the layer Grad-CAM explains: the last feature map before global pooling
BACKBONES = {
    "resnet18": "net.layer4",
    "resnet34": "net.layer4",
    "resnet50": "net.layer4",
    "densenet121": "net.features",  # ends with norm5 (batch norm + ReLU)
    "efficientnet_b0": "net.bn2",  # conv_head's batch norm + SiLU
}
PROBE_TIMEOUT_S = 3.0
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
# timm.data.IMAGENET_DEFAULT_MEAN/STD, the pretrained_cfg of every backbone here (a test checks).
# Written out so that listing models or loading a baseline-cnn checkpoint never imports timm.
IMAGENET = Preprocessing(input_size=96, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


class TimmBackbone(nn.Module):
    """A timm classifier with a single output, returning shape ``(N,)`` logits."""

    def __init__(self, arch: str, pretrained: bool = False, **timm_kwargs: Any) -> None:
        super().__init__()
        self.arch = arch
        self.net = _create(arch, pretrained, timm_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out.squeeze(1)


def _create(arch: str, pretrained: bool, timm_kwargs: dict[str, Any]) -> nn.Module:
    import timm

    if not pretrained:
        return timm.create_model(arch, pretrained=False, num_classes=1, **timm_kwargs)
    _check_weights_reachable(arch)
    try:
        return timm.create_model(arch, pretrained=True, num_classes=1, **timm_kwargs)
    except Exception as exc:  # hub, network, cache and file errors all mean "no weights"
        raise MetastasisError(
            f"{arch}: cannot load ImageNet weights ({first_line(exc)}); "
            "use pretrained=false to start from random weights"
        ) from None


def _check_weights_reachable(arch: str) -> None:
    """Fail fast, with one line, when the weights are neither cached nor downloadable."""
    from huggingface_hub import constants, try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    repo = cfg.hf_hub_id if cfg is not None else None
    if not repo:
        return  # not on the hub: leave it to timm (and its own error)
    files = (cfg.hf_hub_filename,) if cfg is not None and cfg.hf_hub_filename else _WEIGHT_FILES
    if any(isinstance(try_to_load_from_cache(repo, f), str) for f in files):
        return
    hint = "use pretrained=false, or download them once where the network is available"
    if constants.HF_HUB_OFFLINE or _is_true(os.environ.get("HF_HUB_OFFLINE")):
        raise MetastasisError(
            f"{arch}: ImageNet weights ({repo}) are not in the local Hugging Face cache "
            f"and HF_HUB_OFFLINE is set; {hint}"
        )
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return  # a direct connection says nothing about a proxied one
    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    problem = _unreachable(endpoint)
    if problem:
        raise MetastasisError(
            f"{arch}: ImageNet weights ({repo}) are not in the local Hugging Face cache "
            f"and {endpoint} cannot be reached ({problem}); {hint}"
        )


def _unreachable(url: str) -> str | None:
    """None if a TCP connection to the URL's host opens within the timeout, else the reason."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return f"invalid endpoint {url!r}"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def _is_true(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _register(arch: str, layer: str) -> None:
    def factory(pretrained: bool = False, **timm_kwargs: Any) -> nn.Module:
        return TimmBackbone(arch, pretrained=pretrained, **timm_kwargs)

    factory.__name__ = factory.__qualname__ = arch
    register_model(
        arch,
        preprocessing=IMAGENET,
        description=f"timm {arch}, one logit (ImageNet weights with pretrained=True)",
        target_layer=layer,
    )(factory)


for _arch, _layer in BACKBONES.items():
    _register(_arch, _layer)
