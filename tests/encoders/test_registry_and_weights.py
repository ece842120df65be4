from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file
from tests.encoders.tiny_vit import TINY, TINY_KWARGS

from metastasis.data import synthetic
from metastasis.encoders import weights as weights_module
from metastasis.encoders.backbone import build_encoder
from metastasis.encoders.embed import resolve_encoder
from metastasis.encoders.registry import ENCODERS, POOLINGS, get_encoder_spec
from metastasis.encoders.store import encode_batches, preprocessing_of
from metastasis.encoders.weights import WEIGHTS_DIR_ENV, resolve_weights
from metastasis.errors import MetastasisError


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_every_registered_encoder_is_complete(name: str) -> None:
    spec = ENCODERS[name]
    assert spec.input_size == 224 and spec.pooling in POOLINGS and spec.embed_dim > 0
    assert len(spec.mean) == len(spec.std) == 3 and min(spec.std) > 0
    assert spec.source and spec.licence and spec.sha256 is None  # none published: never invented
    if spec.runtime == "timm":
        assert timm.is_model(spec.arch)
    if spec.noncommercial:
        assert "non-commercial" in spec.licence


def test_unknown_encoder_is_one_line() -> None:
    with pytest.raises(MetastasisError, match=r"unknown encoder 'nope'; known: h-optimus-0"):
        get_encoder_spec("nope")
    with pytest.raises(MetastasisError, match="timm has no model"):
        get_encoder_spec("timm:nope")


def test_embeddings_are_deterministic_and_match_a_direct_forward_pass(tiny_weights: Path) -> None:
    spec, weights = resolve_encoder(TINY, tiny_weights, TINY_KWARGS, 32)
    assert weights.sha256 == hashlib.sha256(tiny_weights.read_bytes()).hexdigest()
    images, _ = synthetic.make_patches(5, seed=3)
    prep = preprocessing_of(spec)
    cpu = torch.device("cpu")
    a = encode_batches(build_encoder(spec, weights), images, prep, 2, cpu)
    b = encode_batches(build_encoder(spec, weights), images, prep, 5, cpu)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY_KWARGS).eval()
    net.load_state_dict(load_file(str(tiny_weights)))
    with torch.no_grad():
        x = prep(torch.from_numpy(images))
        direct = net(x).numpy()
        tokens = net.forward_features(x)
    assert a.shape == (5, 48)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, direct, atol=1e-5)
    # CLS + mean of the patch tokens (the class token skipped), as Virchow2 and Midnight
    both = spec.__class__(**{**spec.__dict__, "pooling": "cls+mean"})
    c = encode_batches(build_encoder(both, weights), images, prep, 5, cpu)
    expected = torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], 1).numpy()
    np.testing.assert_allclose(c, expected, atol=1e-5)


def test_missing_or_wrong_weights_are_one_line_saying_where_to_put_them(
    tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = get_encoder_spec("uni")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    with pytest.raises(MetastasisError) as err:
        resolve_weights(spec, tmp_path / "uni.bin")
    text = str(err.value)
    assert "\n" not in text and "no such file" in text and "--weights" in text
    assert "MahmoodLab/UNI/pytorch_model.bin" in text and WEIGHTS_DIR_ENV in text
    tiny = get_encoder_spec(TINY)
    with pytest.raises(MetastasisError, match=r"SHA-256 .* is not the expected 000000000000"):
        resolve_weights(tiny, tiny_weights, sha256="0" * 64)
    wider = tiny.with_overrides({**TINY_KWARGS, "embed_dim": 64})  # a file of another model
    with pytest.raises(MetastasisError, match="do not fit timm:vit_tiny"):
        build_encoder(wider, resolve_weights(tiny, tiny_weights))
    # found by name in $METASTASIS_WEIGHTS_DIR when the recorded path is gone
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tiny_weights.parent))
    moved = resolve_weights(tiny, tmp_path / "elsewhere" / tiny_weights.name)
    assert moved.path == tiny_weights


def test_a_non_commercial_licence_is_printed_once(
    tiny_weights: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights_module, "_NOTICES", set())
    spec = get_encoder_spec("uni2-h")
    for _ in range(2):
        resolve_weights(spec, tiny_weights)  # found and hashed; not built
    err = capsys.readouterr().err
    assert err.count("note:") == 1 and "non-commercial licence: CC-BY-NC-ND-4.0" in err
