import pytest
import torch
from torch import nn

from metastasis.engine.ema import EMA


def _tiny(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 1)
    )


def test_update_is_decay_times_old_plus_one_minus_decay_times_new() -> None:
    model = _tiny()
    decay = 0.9
    ema = EMA(model, decay)
    old = [p.detach().clone() for p in ema.module.parameters()]
    with torch.no_grad():  # move the live weights somewhere else
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    new = [p.detach().clone() for p in model.parameters()]
    ema.update(model)
    for e, o, n in zip(ema.module.parameters(), old, new, strict=True):
        torch.testing.assert_close(e, decay * o + (1 - decay) * n)
        assert not torch.equal(e, n) and not torch.equal(e, o)
    # Twice more: the average keeps following the same recursion.
    expected = [
        decay * (decay * o + (1 - decay) * n) + (1 - decay) * n
        for o, n in zip(old, new, strict=True)
    ]
    ema.update(model)
    for e, x in zip(ema.module.parameters(), expected, strict=True):
        torch.testing.assert_close(e, x)


def test_ema_is_a_frozen_copy_independent_of_the_live_model() -> None:
    model = _tiny()
    ema = EMA(model, 0.5)
    assert ema.module is not model and not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    before = [p.detach().clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0).add_(1.0)
    for e, b in zip(ema.module.parameters(), before, strict=True):
        torch.testing.assert_close(e, b)  # untouched until update()


def test_buffers_are_copied_by_sync_buffers_not_averaged() -> None:
    model = _tiny()
    ema = EMA(model, 0.9)
    model.train()
    model(torch.randn(8, 3, 8, 8) * 3 + 1)  # batch norm's running stats move
    live_mean = model.get_buffer("1.running_mean")
    ema_mean = ema.module.get_buffer("1.running_mean")
    assert not torch.equal(live_mean, ema_mean)
    ema.update(model)  # parameters only
    assert not torch.equal(live_mean, ema_mean)
    ema.sync_buffers(model)
    for b_ema, b in zip(ema.module.buffers(), model.buffers(), strict=True):
        torch.testing.assert_close(b_ema, b)
    torch.testing.assert_close(ema_mean, live_mean)
    assert int(ema.module.get_buffer("1.num_batches_tracked")) == 1


def test_state_dict_round_trip() -> None:
    model = _tiny(0)
    ema = EMA(model, 0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()
    model(torch.randn(4, 3, 8, 8))
    ema.update(model)
    ema.sync_buffers(model)
    state = ema.state_dict()
    assert all(v.device.type == "cpu" for v in state.values())
    other = EMA(_tiny(1), 0.9)
    other.load_state_dict(state)
    loaded = other.module.state_dict()
    assert set(loaded) == set(state)
    for k, v in state.items():
        torch.testing.assert_close(loaded[k], v)
    # A copy: changing the live EMA afterwards leaves the saved state alone.
    saved = {k: v.clone() for k, v in state.items()}
    ema.update(model)
    for k, v in state.items():
        torch.testing.assert_close(v, saved[k])
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(other.module(x), _eval_copy(ema, state)(x))


def _eval_copy(ema: EMA, state: dict[str, torch.Tensor]) -> nn.Module:
    m = _tiny(2).eval()
    m.load_state_dict(state)
    return m


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_decay_outside_open_unit_interval_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match="decay"):
        EMA(_tiny(), decay)
