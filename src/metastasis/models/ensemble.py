"""The ``ensemble`` family: several trained models whose probabilities are averaged.

``create_model("ensemble", members=[{"arch": "regularised-cnn", "arch_kwargs": {...},
"temperature": 1.3}, ...])`` builds each member as its own family builds it; the module's
weights are the members' under ``members.<i>.`` (what ``metastasis.ensemble.build_ensemble``
writes into a checkpoint from the members' run folders). Every member takes the same input:
the ensemble's checkpoint has one preprocessing, which every member's must equal.

The output is, like every model's here, one logit per patch: the logit of the mean of the
members' probabilities, ``logit(mean_i sigmoid(z_i / T_i))`` with ``T_i`` the member's own
temperature, so whatever applies a sigmoid (predict, evaluate, slides, serve, an exported graph)
gets the averaged probability. It is computed as ``log mean sigmoid(z) - log mean sigmoid(-z)``
with a log-sum-exp of log-sigmoids (both written with ops every exporter knows), which is finite
and exact in float32 for every finite logit: the naive ``logit(mean(sigmoid(z)))`` needs a
clamp (float32 cannot hold ``1 - p`` below 6e-8, so it saturates at a logit of about 16) and
amplifies a runtime's rounding near 0 and 1 far past the 1e-4 an export is checked against.

Grad-CAM explains member 0's last feature map (``target_layer``: ``members.0.`` + that
member's family's layer). The ensemble's logit rises with each member's, so its gradient there
is member 0's scaled by a positive number per patch, which Grad-CAM's per-patch scaling removes:
the map is member 0's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn

from metastasis.models.registry import create_model, layer_name, register_model

DEFAULT_MEMBERS = ({"arch": "regularised-cnn"}, {"arch": "regularised-cnn"})  # listing, tests


class EnsembleModel(nn.Module):
    """Members -> logits -> each divided by its temperature -> logit of the mean probability."""

    def __init__(
        self, members: Sequence[nn.Module], archs: Sequence[str], temperatures: Sequence[float]
    ) -> None:
        super().__init__()
        if not members or not len(members) == len(archs) == len(temperatures):
            raise ValueError(
                "an ensemble needs at least one member, each with arch and temperature"
            )
        self.members = nn.ModuleList(members)
        self.archs = tuple(archs)
        self.temperatures = tuple(float(t) for t in temperatures)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``M x N``: each member's logits divided by its temperature."""
        out = []
        for member, t in zip(self.members, self.temperatures, strict=True):
            z = member(x)
            out.append(z / t if t != 1.0 else z)
        return torch.stack(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.member_logits(x)
        return _log_sum_sigmoid(z) - _log_sum_sigmoid(-z)  # the log M of both means cancels

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Each member loads its own ``members.<i>.`` keys with its own ``load_state_dict`` (a
        member may keep part of itself outside its state dict: ``encoder-probe``'s encoder)."""
        prefixes = [f"members.{i}." for i in range(len(self.members))]
        unexpected = [k for k in state_dict if not k.startswith(tuple(prefixes))]
        if strict and unexpected:
            raise RuntimeError(f"unexpected keys outside the members: {unexpected[:3]}")
        missing: list[str] = []
        for prefix, member in zip(prefixes, self.members, strict=True):
            part = {
                k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)
            }
            result = member.load_state_dict(part, strict=strict, assign=assign)
            missing += [prefix + k for k in getattr(result, "missing_keys", [])]
        return nn.modules.module._IncompatibleKeys(missing, unexpected)


def _log_sum_sigmoid(z: torch.Tensor) -> torch.Tensor:
    """``log sum_i sigmoid(z_i)`` over dim 0, stable: log-sigmoid as ``min(z, 0) -
    log(1 + exp(-|z|))`` and a max-shifted log-sum-exp. Written out on purpose: torch's
    ``F.logsigmoid`` and ``torch.logsumexp`` export to ONNX as the naive formulas (measured:
    +-inf in ONNX Runtime for a member logit of 50)."""
    a = z.clamp(max=0.0) - torch.log1p(torch.exp(-z.abs()))
    top = a.max(dim=0).values
    return top + torch.log(torch.exp(a - top).sum(dim=0))


def member_layer(model: nn.Module) -> str:
    """The layer Grad-CAM explains: member 0's (see the module notes)."""
    ens = cast(EnsembleModel, model)
    return f"members.0.{layer_name(ens.archs[0], ens.members[0])}"


@register_model(
    "ensemble",
    description="several trained models' probabilities averaged (metastasis ensemble)",
    target_layer=member_layer,
)
def ensemble(
    members: Sequence[Mapping[str, Any]] = DEFAULT_MEMBERS, pretrained: bool = False
) -> nn.Module:
    """``members``: ``{"arch", "arch_kwargs", "temperature"}`` each (the last two optional).
    Their weights come from the ensemble's checkpoint, never downloaded: a member's
    ``pretrained`` is turned off (``pretrained`` here is accepted like every family's)."""
    built, archs, temperatures = [], [], []
    for i, spec in enumerate(members):
        if not isinstance(spec, Mapping) or not isinstance(spec.get("arch"), str):
            raise ValueError(f"members[{i}]: expected a dict with an 'arch' name, got {spec!r}")
        kwargs = dict(spec.get("arch_kwargs") or {})
        if "pretrained" in kwargs:
            kwargs["pretrained"] = False
        t = spec.get("temperature", 1.0)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < float("inf"):
            raise ValueError(f"members[{i}].temperature: expected a positive number, got {t!r}")
        built.append(create_model(spec["arch"], **kwargs))
        archs.append(spec["arch"])
        temperatures.append(float(t))
    return EnsembleModel(built, archs, temperatures)
