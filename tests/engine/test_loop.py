"""engine.loop: one epoch of training on a tiny real model."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from metastasis.engine.loop import train_one_epoch


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


def test_training_loss_is_the_patch_weighted_mean_and_labels_keep_their_order() -> None:
    batches = _batches(50, 16)  # the last batch has 2 patches
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the model does not change
    out = train_one_epoch(model, batches, opt, _prepare)
    logits = torch.cat([model(_prepare(x)) for x, _ in batches]).detach()
    y = torch.cat([t for _, t in batches])
    expected = nn.functional.binary_cross_entropy_with_logits(logits, y.float())
    assert abs(out.loss - float(expected)) < 1e-5
    np.testing.assert_array_equal(out.labels, y.numpy())
    np.testing.assert_allclose(out.probs, torch.sigmoid(logits).numpy(), atol=1e-6)
