import pytest
import torch

from metastasis.models import MODELS, create_model, default_preprocessing, list_models


@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_forward_and_backward(name: str) -> None:
    model = create_model(name)
    x = torch.rand(2, 3, 96, 96, requires_grad=True)
    out = model(x)
    assert out.shape == (2,) and out.dtype == torch.float32
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert default_preprocessing(name).input_size == 96


def test_baseline_cnn_matches_the_keras_seed() -> None:
    """Same layers and parameter count as the Keras model (1,731,905 parameters)."""
    model = create_model("baseline-cnn")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (3, 32, (3, 3), (0, 0)),
        (32, 64, (3, 3), (0, 0)),
        (64, 128, (3, 3), (0, 0)),
    ]
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(d.in_features, d.out_features) for d in dense] == [(128 * 10 * 10, 128), (128, 1)]
    assert sum(p.numel() for p in model.parameters()) == 1_731_905
    assert all(torch.count_nonzero(m.bias) == 0 for m in convs + dense)


def test_pool_before_relu_is_the_same_function() -> None:
    x = torch.randn(4, 8, 20, 20)
    relu_pool = torch.nn.functional.max_pool2d(torch.relu(x), 2)
    pool_relu = torch.relu(torch.nn.functional.max_pool2d(x, 2))
    torch.testing.assert_close(relu_pool, pool_relu, rtol=0, atol=0)


def test_unknown_model_and_duplicate_registration() -> None:
    with pytest.raises(KeyError, match="unknown model 'nope'; known: baseline-cnn"):
        create_model("nope")
    with pytest.raises(ValueError, match="already registered"):
        MODELS.register("baseline-cnn")(MODELS.get("baseline-cnn"))
