"""slides.fullyconv: one pass over a block equals per-tile inference (within 1e-4)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from tests.slides.conftest import random_bundle

from metastasis.data import synthetic
from metastasis.inference.batches import predict
from metastasis.slides.classify import SlideClassifier
from metastasis.slides.fullyconv import (
    FullyConvolutional,
    block_side,
    fully_conv_reason,
    raw_input,
)


def _block(n: int, stride: int, seed: int = 0) -> np.ndarray:
    """A block of synthetic patches (positives and negatives) laid edge to edge."""
    side = block_side(stride, n)
    k = -(-side // 96)
    images, _ = synthetic.make_patches(k * k, seed=seed)
    grid = images.reshape(k, k, 96, 96, 3).transpose(0, 2, 1, 3, 4).reshape(k * 96, k * 96, 3)
    return np.ascontiguousarray(grid[:side, :side])


def _tiles(block: np.ndarray, n: int, stride: int) -> torch.Tensor:
    return torch.from_numpy(
        np.stack(
            [
                block[r * stride : r * stride + 96, c * stride : c * stride + 96]
                for r in range(n)
                for c in range(n)
            ]
        )
    )


@pytest.mark.parametrize(
    ("arch", "stride"), [("baseline-cnn", 32), ("baseline-cnn", 8), ("regularised-cnn", 96)]
)
def test_fully_convolutional_logits_equal_per_tile_logits(arch: str, stride: int) -> None:
    bundle = random_bundle(arch, seed=3)
    model = bundle.build_model()
    if arch == "regularised-cnn":  # non-trivial batch-norm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    n = 5
    block = _block(n, stride)
    # a normalisation that is not the identity, to check the folded one
    prep = replace(bundle.preprocessing, mean=(0.70, 0.55, 0.68), std=(0.21, 0.26, 0.19))
    fc = FullyConvolutional(model, stride)
    folded = FullyConvolutional(model, stride, prep)
    with torch.inference_mode():
        block_prep = replace(prep, input_size=block.shape[0])
        whole = fc(block_prep(torch.from_numpy(block)[None])).reshape(n, n)
        whole_raw = folded(raw_input(torch.from_numpy(block)[None])).reshape(n, n)
        tiles = model(prep(_tiles(block, n, stride))).reshape(n, n)
    assert whole.shape == (n, n)
    assert float((whole - tiles).abs().max()) <= 1e-4
    assert float((whole_raw - tiles).abs().max()) <= 1e-4


@pytest.mark.parametrize("tta", ["none", "d4"])
def test_classifier_modes_agree_through_the_engines(tta: str) -> None:
    """Fully convolutional (ONNX Runtime) and per-tile (Predictor) on the same block,
    with temperature and D4 TTA, against inference.batches.predict on the tiles."""
    bundle = random_bundle(seed=5)
    bundle.temperature = 1.7
    bundle.preprocessing = replace(bundle.preprocessing, mean=(0.7, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    fc = SlideClassifier(bundle, stride=32, tta=tta, device="cpu", block_tiles=3)
    tiles_mode = SlideClassifier(
        bundle, stride=32, tta=tta, device="cpu", fully_conv="off", block_tiles=3
    )
    assert (fc.mode, tiles_mode.mode) == ("fully-convolutional", "per-tile")
    assert "onnxruntime" in fc.engine_text
    n = fc.n
    block = _block(n, 32, seed=1)
    selected = np.ones((n, n), bool)
    selected[0, 1] = False
    a = fc.classify(block, selected)
    b = tiles_mode.classify(block, selected)
    assert np.isnan(a[0, 1]) and np.isnan(b[0, 1])
    model = bundle.build_model()
    tiles = _tiles(block, n, 32)
    ref = predict(model, [(tiles, torch.zeros(len(tiles)))], bundle.preprocessing, None, tta,
                  1.7).probs.reshape(n, n)  # fmt: skip
    assert np.nanmax(np.abs(a - ref)) <= 1e-4
    assert np.nanmax(np.abs(b - ref)) <= 1e-4


def test_which_models_and_strides_allow_the_fully_convolutional_pass() -> None:
    assert fully_conv_reason("baseline-cnn", {}, 96, 32) == ""
    assert "multiple of 8" in fully_conv_reason("baseline-cnn", {}, 96, 36)
    assert "input size" in fully_conv_reason("baseline-cnn", {}, 64, 32)
    assert "4th block" in fully_conv_reason("regularised-cnn", {"fourth_block": True}, 96, 32)
    assert "not one of" in fully_conv_reason("resnet18", {}, 96, 32)
    with pytest.raises(Exception, match="cannot be used"):
        SlideClassifier(random_bundle(), stride=36, device="cpu", fully_conv="on")
