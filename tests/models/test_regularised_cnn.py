import pytest
import torch

from metastasis.models import create_model, default_preprocessing
from metastasis.models.regularised_cnn import RegularisedCNN


def _count(model: torch.nn.Module, kind: type[torch.nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def test_three_blocks_with_batch_norm_and_global_pooling() -> None:
    model = create_model("regularised-cnn")
    assert isinstance(model, RegularisedCNN)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert _count(model, torch.nn.BatchNorm2d) == 3
    assert _count(model, torch.nn.AdaptiveAvgPool2d) == 1
    assert sum(p.numel() for p in model.parameters()) < 200_000  # the seed has 1.7 M
    assert default_preprocessing("regularised-cnn").mean == (0.0, 0.0, 0.0)


def test_fourth_block_dense_head_and_dropout_argument() -> None:
    model = create_model("regularised-cnn", dropout=0.5, fourth_block=True, dense=64)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256]
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.5}
    model.eval()
    x = torch.rand(3, 3, 96, 96)
    assert model(x).shape == (3,)
    torch.testing.assert_close(model(x), model(x))  # dropout off in eval mode
    with pytest.raises(ValueError, match="dropout"):
        create_model("regularised-cnn", dropout=1.0)


@pytest.mark.parametrize("size", [32, 96, 224])
def test_any_input_size(size: int) -> None:
    model = create_model("regularised-cnn").eval()
    assert model(torch.rand(2, 3, size, size)).shape == (2,)
