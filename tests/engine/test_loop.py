"""engine.loop: one epoch of training on a tiny real model."""

from __future__ import annotations

import numpy as np
import torch
from tests.helpers import tiny_batches, tiny_linear_model, to_input
from torch import nn

from metastasis.engine.loop import train_one_epoch


def test_training_loss_is_the_patch_weighted_mean_and_labels_keep_their_order() -> None:
    batches = tiny_batches(50, 16)  # the last batch has 2 patches
    model = tiny_linear_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the model does not change
    out = train_one_epoch(model, batches, opt, to_input)
    logits = torch.cat([model(to_input(x)) for x, _ in batches]).detach()
    y = torch.cat([t for _, t in batches])
    expected = nn.functional.binary_cross_entropy_with_logits(logits, y.float())
    assert abs(out.loss - float(expected)) < 1e-5
    np.testing.assert_array_equal(out.labels, y.numpy())
    np.testing.assert_allclose(out.probs, torch.sigmoid(logits).numpy(), atol=1e-6)
