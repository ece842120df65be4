"""The ``encoder-probe`` family: a frozen foundation encoder (``metastasis.encoders``) + a head.

``create_model("encoder-probe", encoder=SPEC_DICT, weights=PATH, weights_sha256=HEX,
head="linear")`` builds the encoder from its local weight file (checked against the recorded
SHA-256; see ``encoders.weights`` for where the file is looked for when ``PATH`` is gone) and
a head on its embedding; the output is one logit per patch, like every model here. The
module's ``state_dict`` holds the head only: a checkpoint carries the head, the encoder's spec,
weight path and hash, and never the encoder's (large, often licensed) weights.

``finetune_blocks=N`` (N > 0; ``metastasis train --finetune-blocks N``) makes the last N
transformer blocks of a timm ViT (``net.blocks[-N:]``) and its final norm (``norm``; and
``fc_norm`` where it has weights and the embedding is the pooled output) trainable; the rest of
the encoder stays frozen, with its gradients off and in eval mode even while the module trains
(no dropout or drop-path there, and a CNN's batch norm statistics would stay the weight
file's). The ``state_dict`` then holds the head and those modules
(``encoder.net.blocks.11.*``, ``encoder.net.norm.*``): a checkpoint is the weight file (its
SHA-256 checked) with the fine-tuned blocks loaded over it, strictly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from metastasis.encoders.backbone import build_encoder, embed_dim
from metastasis.encoders.registry import EncoderSpec, get_encoder_spec
from metastasis.encoders.weights import resolve_weights
from metastasis.errors import MetastasisError
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
    """encoder (frozen, but for its last ``finetune_blocks`` blocks) -> embedding -> head ->
    logit, shape ``(N,)``."""

    def __init__(self, encoder: nn.Module, head: nn.Module, finetune_blocks: int = 0) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.finetune_blocks = finetune_blocks
        self.tuned = tuned_modules(encoder, finetune_blocks)  # name (from here) -> module
        for module in self.tuned.values():
            module.requires_grad_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.encoder(x))
        return out.squeeze(1)

    def train(self, mode: bool = True) -> EncoderProbe:
        """The head and the fine-tuned modules train; the frozen encoder stays in eval mode."""
        super().train(mode)
        self.encoder.eval()
        for module in self.tuned.values():
            module.train(mode)
        return self

    def trained_modules(self) -> dict[str, nn.Module]:
        """What training changes and the ``state_dict`` holds: the head, the fine-tuned blocks."""
        return {"head": self.head, **self.tuned}

    def state_dict(  # type: ignore[override]
        self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False
    ) -> dict[str, Any]:
        """The head's tensors (``head.*``) and the fine-tuned modules' (under their names):
        the rest of the encoder comes from its own file."""
        out = OrderedDict() if destination is None else destination
        for name, module in self.trained_modules().items():
            module.state_dict(destination=out, prefix=f"{prefix}{name}.", keep_vars=keep_vars)
        return out

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        modules = self.trained_modules()
        parts: dict[str, dict[str, Any]] = {name: {} for name in modules}
        other = []
        for key, value in state_dict.items():
            name = next((n for n in modules if key.startswith(n + ".")), None)
            if name is None:
                other.append(key)
            else:
                parts[name][key[len(name) + 1 :]] = value
        if strict and other:
            raise RuntimeError(f"unexpected keys outside the trained modules: {other[:3]}")
        missing: list[str] = []
        unexpected: list[str] = list(other)
        for name, module in modules.items():
            res = module.load_state_dict(parts[name], strict=strict, assign=assign)
            missing += [f"{name}.{k}" for k in res.missing_keys]
            unexpected += [f"{name}.{k}" for k in res.unexpected_keys]
        return nn.modules.module._IncompatibleKeys(missing, unexpected)


def tuned_modules(encoder: nn.Module, blocks: int) -> dict[str, nn.Module]:
    """The last ``blocks`` transformer blocks of a timm ViT encoder and its final norm(s), by
    their names in ``EncoderProbe``; refused in one line where there are no such blocks."""
    if blocks <= 0:
        return {}
    net = getattr(encoder, "net", encoder)
    stack = getattr(net, "blocks", None)
    if getattr(encoder, "hf", False) or not isinstance(stack, (nn.Sequential, nn.ModuleList)):
        raise MetastasisError(
            f"finetune_blocks: only timm ViT encoders (with `blocks`) can be fine-tuned, "
            f"not {type(net).__name__}; use finetune_blocks 0 (a probe)"
        )
    if blocks > len(stack):
        raise MetastasisError(
            f"finetune_blocks: {blocks} is more than the encoder's {len(stack)} blocks"
        )
    out: dict[str, nn.Module] = {
        f"encoder.net.blocks.{i}": stack[i] for i in range(len(stack) - blocks, len(stack))
    }
    norms = ("norm", "fc_norm") if getattr(encoder, "pooling", "") == "pooled" else ("norm",)
    for norm in norms:  # fc_norm (after pooling) only where the embedding goes through it
        module = getattr(net, norm, None)
        if isinstance(module, nn.Module) and any(True for _ in module.parameters()):
            out[f"encoder.net.{norm}"] = module
    return out


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
    finetune_blocks: int = 0,
) -> nn.Module:
    """``weights`` None: random encoder weights (drawn from seed 0, so the same every time),
    like ``pretrained=False`` elsewhere; the CLI always passes a file or ``random``.
    ``finetune_blocks``: the last blocks that train with the head (see the module doc)."""
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
    return EncoderProbe(enc, probe_head, finetune_blocks)
