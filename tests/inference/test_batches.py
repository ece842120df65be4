"""inference.batches: one pass of prediction on a tiny real model."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from metastasis.inference.batches import predict


def _batches(n: int, batch: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 8, 8, 3), dtype=torch.uint8, generator=g)
    y = (x.float().mean((1, 2, 3)) > 127.5).long()
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


def _prepare(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2).float() / 255.0


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 3, 1), nn.Flatten(0))


def test_outputs_cover_every_patch_in_order_when_the_loader_has_no_length() -> None:
    batches = _batches(70, 16)  # a plain list: no .dataset, so the buffers must grow
    model = _model()
    out = predict(model, batches, _prepare)
    expected = torch.cat([model(_prepare(x)) for x, _ in batches]).detach()
    assert out.probs.shape == (70,)
    np.testing.assert_allclose(out.logits, expected.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out.labels, torch.cat([y for _, y in batches]).numpy())
    bce = nn.functional.binary_cross_entropy_with_logits(
        expected, torch.from_numpy(out.labels).float()
    )
    assert abs(out.loss - float(bce)) < 1e-6
