"""inference.explain: Grad-CAM heat maps (pytorch-grad-cam) and their overlays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metastasis.data import synthetic
from metastasis.engine.checkpoint import load_checkpoint
from metastasis.engine.trainer import RunResult
from metastasis.inference.explain import (
    centre_box,
    centre_share,
    gradcam,
    outline_centre,
    overlay,
)
from metastasis.inference.predictor import Predictor
from metastasis.models import create_model, list_models, target_layer
from metastasis.transforms.presets import Preprocessing


@pytest.fixture(scope="module")
def patches() -> np.ndarray:
    images, _ = synthetic.make_patches(6, seed=1)
    return images


def test_every_registered_model_names_a_feature_map_to_explain() -> None:
    for name in list_models():
        kwargs = {} if "cnn" in name else {"pretrained": False}
        torch.manual_seed(0)
        model = create_model(name, **kwargs).eval()
        seen: list[torch.Tensor] = []
        handle = target_layer(name, model).register_forward_hook(
            lambda _m, _i, out, seen=seen: seen.append(out)
        )
        with torch.no_grad():
            model(torch.zeros(1, 3, 96, 96))
        handle.remove()
        assert len(seen) == 1 and seen[0].ndim == 4 and min(seen[0].shape[-2:]) >= 2, name


@pytest.mark.parametrize("name", ["baseline-cnn", "regularised-cnn", "resnet18"])
def test_gradcam_gives_one_map_per_patch_in_0_1(name: str, patches: np.ndarray) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    heat = gradcam(model, patches, arch=name)
    assert heat.shape == patches.shape[:3] and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    assert np.isclose(heat.reshape(len(heat), -1).max(1), 1.0, atol=1e-3).any()
    assert model.training is False
    assert all(p.grad is None for p in model.parameters())  # nothing left behind


def test_gradcam_of_a_bundle_a_predictor_and_a_model_agree(
    trained_run: RunResult, patches: np.ndarray
) -> None:
    bundle = load_checkpoint(trained_run.run_dir)
    from_bundle = gradcam(bundle, patches)
    from_predictor = gradcam(
        Predictor.from_checkpoint(trained_run.run_dir, engine="torch"), patches
    )
    from_model = gradcam(bundle.build_model(), patches[0], arch=bundle.arch)
    np.testing.assert_allclose(from_bundle, from_predictor, atol=1e-5)
    np.testing.assert_allclose(from_bundle[:1], from_model, atol=1e-5)


def test_gradcam_maps_come_back_at_the_patch_size_when_the_model_input_is_resized(
    patches: np.ndarray,
) -> None:
    torch.manual_seed(0)
    model = create_model("regularised-cnn").eval()
    heat = gradcam(model, patches, arch="regularised-cnn", preprocessing=Preprocessing(64))
    assert heat.shape == (len(patches), 96, 96)


def test_gradcam_refuses_what_it_cannot_explain(patches: np.ndarray) -> None:
    model = create_model("baseline-cnn")
    with pytest.raises(ValueError, match="uint8"):
        gradcam(model, patches.astype(np.float32), arch="baseline-cnn")
    with pytest.raises(Exception, match="arch"):
        gradcam(model, patches)


def test_overlay_is_an_rgb_patch_with_the_centre_outlined(patches: np.ndarray) -> None:
    heat = np.zeros((96, 96), dtype=np.float32)
    heat[40:56, 40:56] = 1.0
    out = overlay(patches[0], heat)
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    top, left, bottom, right = centre_box(96, 96)
    assert (top, left, bottom, right) == (32, 32, 63, 63)
    assert (out[top, left : right + 1] == 255).all() and (
        out[bottom, left : right + 1] == 255
    ).all()
    assert (out[top : bottom + 1, left] == 255).all() and (
        out[top : bottom + 1, right] == 255
    ).all()
    # jet: the hot square is red, the cold surround blue
    hot, cold = out[48, 48].astype(int), out[10, 10].astype(int)
    assert hot[0] > hot[2] and cold[2] > cold[0]
    assert not np.array_equal(overlay(patches[0], heat, alpha=0.0), overlay(patches[0], heat))
    plain = outline_centre(patches[0])
    assert (plain[5:30, 5:30] == patches[0][5:30, 5:30]).all()


def test_overlay_refuses_mismatched_inputs(patches: np.ndarray) -> None:
    with pytest.raises(ValueError, match="does not match"):
        overlay(patches[0], np.zeros((32, 32), dtype=np.float32))
    with pytest.raises(ValueError, match="alpha"):
        overlay(patches[0], np.zeros((96, 96), dtype=np.float32), alpha=1.5)


def test_centre_share() -> None:
    heat = np.zeros((3, 96, 96))
    heat[0, 32:64, 32:64] = 1.0
    heat[1] = 1.0
    share = centre_share(heat)
    np.testing.assert_allclose(share[:2], [1.0, 1 / 9])
    assert np.isnan(share[2])
