import pytest
import torch

from metastasis.errors import MetastasisError
from metastasis.transforms.augment import augment_batch, random_flips
from metastasis.transforms.presets import Preprocessing


def _batch(n: int = 16) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, 96, 96, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


def test_seed_preprocessing_rescales_to_unit_range() -> None:
    x = _batch(2)
    out = Preprocessing()(x)
    assert out.shape == (2, 3, 96, 96) and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, x.permute(0, 3, 1, 2).float() / 255)


def test_normalisation_and_resize() -> None:
    x = torch.full((1, 96, 96, 3), 255, dtype=torch.uint8)
    pre = Preprocessing(input_size=128, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    out = pre(x)
    assert out.shape == (1, 3, 128, 128)
    torch.testing.assert_close(out, torch.full_like(out, 2.0))
    assert Preprocessing.from_dict(pre.to_dict()) == pre


def test_preprocessing_rejects_float_input() -> None:
    with pytest.raises(ValueError, match="expected uint8"):
        Preprocessing()(torch.zeros(1, 96, 96, 3))


def test_flips_keep_shape_dtype_and_are_flips() -> None:
    x = _batch()
    out = random_flips(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    views = [x, x.flip(1), x.flip(2), x.flip(1).flip(2)]
    kinds = set()
    for i in range(len(x)):
        matches = [k for k, v in enumerate(views) if torch.equal(out[i], v[i])]
        assert matches, "every output must be one of the four flips of its input"
        kinds.add(matches[0])
    assert len(kinds) > 1  # a batch of 16 gets more than one kind of flip


def test_flips_are_seeded() -> None:
    x = _batch()
    a = random_flips(x, torch.Generator().manual_seed(3))
    b = random_flips(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_augment_presets() -> None:
    x = _batch(2)
    assert augment_batch(x, "none") is x
    with pytest.raises(MetastasisError, match="unknown augmentation preset"):
        augment_batch(x, "wild")
