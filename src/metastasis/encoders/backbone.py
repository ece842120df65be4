"""An encoder as a module: normalised N x 3 x S x S input -> N x D embeddings.

``build_encoder(spec, weights)`` creates the timm architecture with random weights (never
``pretrained=True``: no download) and loads the local file into it, strictly; the embedding is
read as the spec says: ``cls`` (the class token after the final norm), ``cls+mean`` (the class
token concatenated with the mean of the patch tokens; class and register tokens are skipped:
timm's ``num_prefix_tokens``) or ``pooled`` (the model's own head-less output). Hugging Face
``transformers`` models (Phikon, Hibou, Midnight) need the optional ``transformers`` package and
a local model folder; that route is not exercised by the tests (the package is not installed).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from metastasis.encoders.registry import EncoderSpec
from metastasis.encoders.weights import Weights, read_state_dict
from metastasis.errors import MetastasisError, first_line


class Encoder(nn.Module):
    """A frozen feature extractor returning one embedding per image."""

    def __init__(self, net: nn.Module, pooling: str, prefix_tokens: int, hf: bool = False) -> None:
        super().__init__()
        self.net = net
        self.pooling = pooling
        self.prefix_tokens = prefix_tokens
        self.hf = hf
        cam = _cam_layer(net)
        if cam is not None:  # an alias, for Grad-CAM (``target_layer`` "encoder.cam")
            self.cam = cam

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        if self.hf:
            out: torch.Tensor = self.net(pixel_values=x).last_hidden_state
            return out
        feats: torch.Tensor = self.net.forward_features(x)  # type: ignore[operator]
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling == "pooled" and not self.hf:
            out: torch.Tensor = self.net(x)
            return out
        t = self.tokens(x)
        if self.pooling == "cls+mean":
            return torch.cat([t[:, 0], t[:, self.prefix_tokens :].mean(dim=1)], dim=1)
        return t[:, 0]


def _cam_layer(net: nn.Module) -> nn.Module | None:
    """The layer whose N x C x h x w output Grad-CAM explains: a ViT's patch embedding
    (the patch grid), else the last feature map timm names (``feature_info``)."""
    patch_embed = getattr(net, "patch_embed", None)
    if patch_embed is not None and isinstance(getattr(patch_embed, "proj", None), nn.Conv2d):
        return patch_embed.proj
    info = getattr(net, "feature_info", None)
    if info:
        try:
            return net.get_submodule(info[-1]["module"])
        except (AttributeError, KeyError, TypeError):
            return None
    return None


def _timm_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe kwargs -> timm's: layer names become classes."""
    import timm.layers

    out = dict(kwargs)
    if isinstance(out.get("mlp_layer"), str):
        out["mlp_layer"] = getattr(timm.layers, out["mlp_layer"])
    return out


def build_encoder(spec: EncoderSpec, weights: Weights) -> Encoder:
    """The encoder of ``spec`` with ``weights`` loaded, in eval mode, gradients off."""
    if spec.runtime == "transformers":
        enc = _transformers_encoder(spec, weights)
    else:
        enc = _timm_encoder(spec, weights)
    enc.requires_grad_(False)
    return enc.eval()


def _timm_encoder(spec: EncoderSpec, weights: Weights) -> Encoder:
    import timm

    try:
        net = timm.create_model(spec.arch, pretrained=False, **_timm_kwargs(spec.kwargs))
    except Exception as exc:  # timm refuses bad kwargs in many ways
        raise MetastasisError(
            f"--encoder {spec.name}: timm cannot build {spec.arch} with {spec.kwargs}: "
            f"{first_line(exc)}"
        ) from None
    if weights.path is not None:
        state = read_state_dict(weights.path)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise MetastasisError(
                f"{weights.path}: these weights do not fit {spec.name} ({spec.arch}): "
                f"{first_line(exc)[:200]}"
            ) from None
    prefix = int(getattr(net, "num_prefix_tokens", 1))
    return Encoder(net, spec.pooling, prefix)


def _transformers_encoder(spec: EncoderSpec, weights: Weights) -> Encoder:
    try:
        import transformers
    except ImportError:
        raise MetastasisError(
            f"--encoder {spec.name}: needs the Hugging Face `transformers` package "
            "(pip install transformers); it is not installed"
        ) from None
    if weights.path is None:
        raise MetastasisError(f"--encoder {spec.name}: random weights need a timm encoder")
    folder = weights.path.parent
    cls = getattr(transformers, spec.arch)
    net = cls.from_pretrained(str(folder), local_files_only=True, trust_remote_code=True)
    prefix = 1 + int(getattr(net.config, "num_register_tokens", 0) or 0)
    return Encoder(net, spec.pooling, prefix, hf=True)


def embed_dim(encoder: Encoder, input_size: int) -> int:
    """The embedding size, from one forward pass on a blank image."""
    with torch.inference_mode():
        return int(encoder(torch.zeros(1, 3, input_size, input_size)).shape[1])
