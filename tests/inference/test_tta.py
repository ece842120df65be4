"""Test-time augmentation and temperature in ``predict`` and in the Predictor."""

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.helpers import patches
from torch import nn

from metastasis.checkpoint import Bundle, save_checkpoint, state_dict_cpu
from metastasis.inference.batches import predict
from metastasis.inference.predictor import Predictor
from metastasis.models import create_model, default_preprocessing
from metastasis.transforms.presets import Preprocessing

SIZE = 16
PREP = Preprocessing(input_size=SIZE)


class WholePatchConv(nn.Module):
    """One convolution as large as the patch: a linear function of the pixels that changes
    with every rotation and flip."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 1, SIZE)
        nn.init.normal_(self.conv.weight, std=0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).flatten()


class PointwiseThenPool(nn.Module):
    """1x1 convolution and a global average: invariant to any rearrangement of the pixels."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 1, 1)
        nn.init.normal_(self.conv.weight, std=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean((1, 2, 3))


def _images(n: int = 6, size: int = SIZE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    brightness = rng.uniform(0.1, 1.0, (n, 1, 1, 3))  # patches differ in colour, not only noise
    return (rng.integers(0, 256, (n, size, size, 3)) * brightness).astype(np.uint8)


def _dihedral_views(images: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations and reflections of NHWC images, written out with numpy."""
    views = []
    for quarter_turns in range(4):
        rotated = np.rot90(images, quarter_turns, axes=(1, 2))
        views += [rotated, rotated[:, :, ::-1]]
    return [np.ascontiguousarray(v) for v in views]


def _logits(model: nn.Module, images: np.ndarray, prep: Preprocessing = PREP) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(prep(torch.from_numpy(images))).double()


def _batches(images: np.ndarray, labels: np.ndarray, batch: int = 4) -> list:
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)]


def test_d4_averages_the_logits_of_the_eight_views() -> None:
    model, images = WholePatchConv(), _images()
    labels = np.array([0, 1, 0, 1, 1, 0])
    views = _dihedral_views(images)
    assert len({v[0].tobytes() for v in views}) == 8  # 8 distinct views
    expected_logits = torch.stack([_logits(model, v) for v in views]).mean(0)
    out = predict(model, _batches(images, labels), PREP, tta="d4")
    np.testing.assert_allclose(out.probs, torch.sigmoid(expected_logits).numpy(), atol=1e-6)
    np.testing.assert_array_equal(out.labels, labels)
    expected_loss = nn.functional.binary_cross_entropy_with_logits(
        expected_logits, torch.from_numpy(labels).double()
    )
    assert out.loss == pytest.approx(float(expected_loss), abs=1e-5)
    # The test can tell: without TTA the model gives other probabilities.
    plain = predict(model, _batches(images, labels), PREP)
    np.testing.assert_allclose(plain.probs, torch.sigmoid(_logits(model, images)), atol=1e-6)
    assert np.abs(plain.probs - out.probs).max() > 1e-3


def test_d4_changes_nothing_for_a_rotation_invariant_model() -> None:
    model, images = PointwiseThenPool(), _images()
    labels = np.zeros(len(images), dtype=np.int64)
    d4 = predict(model, _batches(images, labels), PREP, tta="d4")
    none = predict(model, _batches(images, labels), PREP, tta="none")
    np.testing.assert_allclose(d4.probs, none.probs, atol=1e-6)
    assert np.ptp(none.probs) > 0.05  # the patches do get different probabilities


@pytest.mark.parametrize("tta", ["none", "d4"])
@pytest.mark.parametrize("temperature", [0.5, 2.0, 3.7])
def test_temperature_divides_the_logits(tta: str, temperature: float) -> None:
    model, images = WholePatchConv(), _images()
    labels = np.array([1, 0, 1, 1, 0, 0])
    views = _dihedral_views(images) if tta == "d4" else [images]
    logits = torch.stack([_logits(model, v) for v in views]).mean(0)
    out = predict(model, _batches(images, labels), PREP, tta=tta, temperature=temperature)
    np.testing.assert_allclose(out.probs, torch.sigmoid(logits / temperature), atol=1e-6)
    expected_loss = nn.functional.binary_cross_entropy_with_logits(
        logits / temperature, torch.from_numpy(labels).double()
    )
    assert out.loss == pytest.approx(float(expected_loss), abs=1e-5)
    baseline = predict(model, _batches(images, labels), PREP, tta=tta)
    assert np.abs(baseline.probs - out.probs).max() > 1e-3


def test_unlabelled_batches_give_nan_loss_and_unknown_tta_is_refused() -> None:
    model, images = WholePatchConv(), _images(3)
    out = predict(model, _batches(images, np.full(3, -1)), PREP, tta="d4", temperature=2.0)
    assert np.isnan(out.loss) and out.probs.shape == (3,)
    with pytest.raises(ValueError, match="d8"):
        predict(model, _batches(images, np.zeros(3, dtype=np.int64)), PREP, tta="d8")


# --- Predictor and checkpoints ---------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    model = create_model("regularised-cnn").eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so the weights matter
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    bundle = Bundle(
        arch="regularised-cnn",
        arch_kwargs={},
        state_dict=state_dict_cpu(model),
        preprocessing=default_preprocessing("regularised-cnn"),
        threshold=0.3,
        temperature=2.5,
        tta="d4",
    )
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint.pt", bundle)
    return path, model


def _hand_probs(model: nn.Module, images: np.ndarray, tta: str, temperature: float) -> np.ndarray:
    prep = default_preprocessing("regularised-cnn")
    views = _dihedral_views(images) if tta == "d4" else [images]
    logits = torch.stack([_logits(model, v, prep) for v in views]).mean(0)
    return torch.sigmoid(logits / temperature).numpy()


def test_predictor_uses_the_checkpoints_tta_and_temperature(
    saved_bundle: tuple[Path, nn.Module],
) -> None:
    path, model = saved_bundle
    images, _ = patches(10, seed=5)
    predictor = Predictor.from_checkpoint(path, device="cpu", batch_size=4)
    assert (predictor.tta, predictor.temperature, predictor.threshold) == ("d4", 2.5, 0.3)
    probs = predictor.predict_proba(images)
    np.testing.assert_allclose(probs, _hand_probs(model, images, "d4", 2.5), atol=1e-5)
    # Neither TTA nor the temperature is a no-op on this model: the check above can fail.
    assert np.abs(probs - _hand_probs(model, images, "none", 2.5)).max() > 1e-4
    assert np.abs(probs - _hand_probs(model, images, "d4", 1.0)).max() > 1e-3


def test_predictor_tta_override_keeps_the_temperature(
    saved_bundle: tuple[Path, nn.Module],
) -> None:
    path, model = saved_bundle
    images, _ = patches(10, seed=6)
    predictor = Predictor.from_checkpoint(path, device="cpu", batch_size=4, tta="none")
    assert (predictor.tta, predictor.temperature) == ("none", 2.5)
    probs = predictor.predict_proba(images)
    np.testing.assert_allclose(probs, _hand_probs(model, images, "none", 2.5), atol=1e-5)


def test_predictor_refuses_an_unknown_tta(saved_bundle: tuple[Path, nn.Module]) -> None:
    from metastasis.errors import MetastasisError

    with pytest.raises(MetastasisError, match="unknown tta"):
        Predictor.from_checkpoint(saved_bundle[0], device="cpu", tta="d8")


def test_a_d4_invariant_model_runs_one_view_and_gives_the_8_views_mean(tmp_path: Path) -> None:
    torch.manual_seed(0)
    prep = Preprocessing()
    model = create_model("p4m-cnn", widths=(4, 6), dense=8)
    bundle = Bundle("p4m-cnn", {"widths": [4, 6], "dense": 8}, state_dict_cpu(model), prep,
                    tta="d4")  # fmt: skip
    save_checkpoint(tmp_path / "checkpoint.pt", bundle)
    predictor = Predictor.from_checkpoint(tmp_path / "checkpoint.pt", engine="torch")
    assert predictor.tta == "none"  # asked for d4: skipped, the model is D4-invariant
    images = _images(5, size=96)
    eight = torch.stack([_logits(model, v, prep) for v in _dihedral_views(images)]).mean(0)
    probs = predictor.predict_proba(images)
    np.testing.assert_allclose(probs, torch.sigmoid(eight).numpy(), atol=1e-5)
