"""The ``encoder-probe`` family: a frozen foundation encoder (``metastasis.encoders``) + a head.

``create_model("encoder-probe", encoder=SPEC_DICT, weights=PATH, weights_sha256=HEX,
head="linear")`` builds the encoder from its local weight file (checked against the recorded
SHA-256; see ``encoders.weights`` for where the file is looked for when ``PATH`` is gone) and
a head on its embedding; the output is one logit per patch, like every model here. The
module's ``state_dict`` holds the head only: a checkpoint carries the head, the encoder's spec,
weight path and hash, and never the encoder's (large, often licensed) weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from metastasis.encoders.backbone import build_encoder, embed_dim
from metastasis.encoders.registry import EncoderSpec, get_encoder_spec
from metastasis.encoders.weights import resolve_weights
from metastasis.models.registry import register_model

HEADS = ("linear", "mlp")
MLP_HIDDEN = 256


def make_head(kind: str, dim: int, hidden: int = MLP_HIDDEN) -> nn.Module:
    """linear: eva's probe (one linear layer); mlp: one hidden ReLU layer."""
    if kind == "linear":
        return nn.Linear(dim, 1)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    raise ValueError(f"head must be one of {', '.join(HEADS)}, got {kind!r}")


class EncoderProbe(nn.Module):
    """encoder (frozen) -> embedding -> head -> logit, shape ``(N,)``."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.encoder(x))
        return out.squeeze(1)

    def state_dict(  # type: ignore[override]
        self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False
    ) -> dict[str, Any]:
        """The head's tensors only (``head.*``): the encoder comes from its own file."""
        return self.head.state_dict(
            destination=destination, prefix=prefix + "head.", keep_vars=keep_vars
        )

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        other = [k for k in state_dict if not k.startswith("head.")]
        if strict and other:
            raise RuntimeError(f"unexpected keys outside the head: {other[:3]}")
        head = {k.removeprefix("head."): v for k, v in state_dict.items() if k.startswith("head.")}
        return self.head.load_state_dict(head, strict=strict, assign=assign)


def _default_encoder() -> dict[str, Any]:
    """What ``create_model("encoder-probe")`` builds without arguments: timm's ResNet-10-T, a
    small encoder that takes any input size (random weights)."""
    spec = EncoderSpec(
        name="timm:resnet10t",
        arch="resnet10t",
        kwargs={"num_classes": 0},
        input_size=96,
        pooling="pooled",
        embed_dim=512,
        licence="random weights",
        licence_verified=True,
    )
    return spec.to_dict()


@register_model(
    "encoder-probe",
    description="a frozen pathology foundation encoder (metastasis.encoders) + linear/MLP head",
    target_layer="encoder.cam",  # ViT: the patch grid; CNN: the last feature map
)
def encoder_probe(
    encoder: dict[str, Any] | str | None = None,
    weights: str | None = None,
    weights_sha256: str | None = None,
    head: str = "linear",
    hidden: int = MLP_HIDDEN,
    pretrained: bool = False,  # accepted like every family's; the weights are ``weights``
) -> nn.Module:
    """``weights`` None: random encoder weights (drawn from seed 0, so the same every time),
    like ``pretrained=False`` elsewhere; the CLI always passes a file or ``random``."""
    if encoder is None:
        encoder = _default_encoder()
    spec = (
        EncoderSpec.from_dict(encoder) if isinstance(encoder, dict) else get_encoder_spec(encoder)
    )
    found = resolve_weights(spec, weights or "random", weights_sha256)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        enc = build_encoder(spec, found)
        dim = spec.embed_dim or embed_dim(enc, spec.input_size)
        probe_head = make_head(head, dim, hidden)
    return EncoderProbe(enc, probe_head)
