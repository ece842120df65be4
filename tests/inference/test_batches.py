"""inference.batches: one pass of prediction on a tiny real model."""

from __future__ import annotations

import numpy as np
import torch
from tests.helpers import tiny_batches, tiny_linear_model, to_input
from torch import nn

from metastasis.inference.batches import predict


def test_outputs_cover_every_patch_in_order_when_the_loader_has_no_length() -> None:
    batches = tiny_batches(70, 16)  # a plain list: no .dataset, so the buffers must grow
    model = tiny_linear_model()
    out = predict(model, batches, to_input)
    expected = torch.cat([model(to_input(x)) for x, _ in batches]).detach()
    assert out.probs.shape == (70,)
    np.testing.assert_allclose(out.logits, expected.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out.labels, torch.cat([y for _, y in batches]).numpy())
    bce = nn.functional.binary_cross_entropy_with_logits(
        expected, torch.from_numpy(out.labels).float()
    )
    assert abs(out.loss - float(bce)) < 1e-6
