"""Exponential moving average (EMA) of a model's weights, updated after every optimiser step.

Parameters are averaged (``ema = decay * ema + (1 - decay) * live``); buffers such as batch
norm's running statistics are copied from the live model, since they are already averages.
The averaged copy usually validates better and more smoothly than the live weights late in
training; the trainer validates and saves it when ``ema_decay > 0``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params: list[torch.Tensor] = list(self.module.parameters())
        live: list[torch.Tensor] = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, live, 1.0 - self.decay)

    @torch.no_grad()
    def sync_buffers(self, model: nn.Module) -> None:
        for b_ema, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
