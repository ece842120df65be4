"""The ``ensemble`` family: the logit of the mean of the members' probabilities, exactly."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from metastasis.export.onnx import onnx_bytes, onnx_session
from metastasis.models import create_model, target_layer
from metastasis.models.ensemble import EnsembleModel


class Pixel(nn.Module):
    """A member whose logit is the first pixel of one channel of its input."""

    def __init__(self, channel: int) -> None:
        super().__init__()
        self.channel = channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.channel, 0, 0]


def test_the_probability_is_the_mean_of_the_members_after_their_temperatures() -> None:
    torch.manual_seed(0)
    members = [{"arch": "regularised-cnn"}, {"arch": "baseline-cnn", "temperature": 2.5}]
    model = create_model("ensemble", members=members).eval()
    x = torch.rand(4, 3, 96, 96)
    with torch.no_grad():
        got = torch.sigmoid(model(x))
        z0, z1 = model.members[0](x), model.members[1](x) / 2.5
    expected = (torch.sigmoid(z0) + torch.sigmoid(z1)) / 2
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert target_layer("ensemble", model) is model.members[0].features  # member 0's layer


def test_confident_members_give_finite_exact_logits_in_torch_and_onnx() -> None:
    """No clamp: logits of +-1e4 (float32 sigmoids of exactly 0 and 1) stay finite and exact,
    and ONNX Runtime gives the same logits as PyTorch."""
    a = [50.0, -50.0, 100.0, 1e4, -1e4, 0.3, 30.0]
    b = [49.0, -60.0, -100.0, 1e4, 20.0, 0.1, 31.0]
    model = EnsembleModel([Pixel(0), Pixel(1)], ["x", "x"], [1.0, 1.0]).eval()
    x = torch.zeros(7, 3, 4, 4)
    x[:, 0, 0, 0], x[:, 1, 0, 0] = torch.tensor(a), torch.tensor(b)
    with torch.no_grad():
        logit = model(x).double()
    za, zb = np.array(a), np.array(b)
    log_p = np.logaddexp(-np.logaddexp(0, -za), -np.logaddexp(0, -zb))  # log 2p, in float64
    log_q = np.logaddexp(-np.logaddexp(0, za), -np.logaddexp(0, zb))  # log 2(1 - p)
    expected = torch.from_numpy(log_p - log_q)
    assert torch.isfinite(logit).all()
    torch.testing.assert_close(logit, expected, atol=1e-4, rtol=1e-6)
    session = onnx_session(onnx_bytes(model, 4))
    got = session.run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, logit.float().numpy(), atol=1e-5, rtol=1e-6)


def test_the_state_dict_round_trips_through_each_member() -> None:
    torch.manual_seed(1)
    first = create_model("ensemble").eval()
    second = create_model("ensemble").eval()
    second.load_state_dict(first.state_dict())
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(first(x), second(x), atol=0, rtol=0)
    assert all(k.startswith(("members.0.", "members.1.")) for k in first.state_dict())
