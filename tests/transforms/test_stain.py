"""Stain normalisation (transforms/stain.py) on synthetic H&E patches made with known stain
vectors, against a per-patch numpy transcription of Macenko et al. 2009 and Reinhard et al.
2001; the stain augmentation's new knobs; and the shifts of benchmarks/stain_shift.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from metastasis.transforms import stain
from metastasis.transforms.augment import Augmenter, augment_spec, gamma_jitter, hed_jitter
from metastasis.transforms.presets import Preprocessing

H = np.array([0.62, 0.70, 0.35])
E = np.array([0.30, 0.85, 0.43])  # red OD high enough for pure eosin to pass BETA
TRUE = np.stack([H / np.linalg.norm(H), E / np.linalg.norm(E)])  # 2 x 3 unit OD vectors


def synthetic_he(n: int, seed: int, stains: np.ndarray = TRUE, amount: float = 1.0) -> np.ndarray:
    """uint8 n x 48 x 48 x 3 patches: pixels of pure haematoxylin, pure eosin, both, or glass,
    mixed with ``stains`` by Beer-Lambert (``I = Io exp(-C @ stains) - 1``). (Macenko's
    tissue test, every channel's OD >= 0.15, leaves out faint pure eosin, whose red OD is
    small: the eosin vector's percentile then comes from mixed pixels.)"""
    rng = np.random.default_rng(seed)
    p = 48 * 48
    kind = rng.choice(4, size=(n, p), p=[0.3, 0.3, 0.3, 0.1])
    c = rng.uniform(0.5, 1.5, size=(n, p, 2)) * amount
    c[kind == 0, 1] = 0
    c[kind == 1, 0] = 0
    c[kind == 3] = 0
    rgb = stain.IO * np.exp(-(c @ stains)) - 1
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8).reshape(n, 48, 48, 3)


# ---------------------------------------------------------------------------- numpy reference


def macenko_reference(img: np.ndarray, ref: stain.StainReference) -> np.ndarray:
    """One patch, transcribed from Macenko et al. 2009 (as torchstain), in float64, with the
    module's documented choices: estimates on every other row and column, the scale clamp and
    the fallback for patches without tissue."""

    def od_of(a: np.ndarray) -> np.ndarray:
        return -np.log((a.reshape(-1, 3).astype(np.float64) + 1) / stain.IO)

    od_all, od = od_of(img), od_of(img[:: stain.SUBSAMPLE, :: stain.SUBSAMPLE])
    tissue = od[(od >= stain.BETA).all(1)]
    ref_m = np.asarray(ref.matrix)
    if len(tissue) >= stain.MIN_TISSUE:
        _, vecs = np.linalg.eigh(np.cov(tissue.T))
        plane = vecs[:, 1:3].copy()
        plane[:, 1] *= np.sign(plane[:, 1].sum())
        t = tissue @ plane
        phi = np.arctan2(t[:, 1], t[:, 0])
        lo, hi = np.percentile(phi, [stain.ALPHA, 100 - stain.ALPHA])
        v1 = plane @ [np.cos(lo), np.sin(lo)]
        v2 = plane @ [np.cos(hi), np.sin(hi)]
        he = np.stack([v1, v2] if v1[0] > v2[0] else [v2, v1])
        he /= np.linalg.norm(he, axis=1, keepdims=True)
        conc = np.linalg.lstsq(he.T, od.T, rcond=None)[0]
        cmax = np.percentile(conc, stain.MAX_PERCENTILE, axis=1)
        scale = np.clip(np.asarray(ref.concentration) / cmax, *stain.SCALE_RANGE)
    else:
        he, scale = ref_m, np.ones(2)
    conc = np.linalg.lstsq(he.T, od_all.T, rcond=None)[0] * scale[:, None]
    out = np.clip(stain.IO * np.exp(-(conc.T @ ref_m)), 0, 255)
    return np.round(out).astype(np.uint8).reshape(img.shape)


RGB_TO_LMS = np.array(
    [[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]]
)
LMS_TO_LAB = np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array(
    [[1, 1, 1], [1, 1, -2], [1, -1, 0]]
)


def lab_reference(img: np.ndarray) -> np.ndarray:
    """Reinhard et al. 2001's l-alpha-beta of one patch (pixels x 3), RGB as (I + 1) / 256."""
    rgb = (img.reshape(-1, 3).astype(np.float64) + 1) / 256
    return np.log10(rgb @ RGB_TO_LMS.T) @ LMS_TO_LAB.T


# ---------------------------------------------------------------------------- Macenko


def test_macenko_recovers_the_stain_vectors_patches_were_made_with() -> None:
    x = torch.from_numpy(synthetic_he(6, seed=0))
    found, ok = stain.macenko_stains(stain.optical_density(x))
    assert bool(ok.all())
    cosines = (found.double().numpy() * TRUE).sum(2)  # haematoxylin first, then eosin
    assert cosines.min() > 0.995, cosines
    ref = stain.fit_reference("macenko", x)  # the pooled patches give the same vectors
    assert (np.asarray(ref.matrix) * TRUE).sum(1).min() > 0.995
    assert all(1.0 < c < 2.0 for c in ref.concentration)


def test_macenko_matches_the_numpy_transcription_of_the_paper() -> None:
    other = np.stack([[0.55, 0.75, 0.37], [0.35, 0.83, 0.43]])
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    source = np.concatenate([synthetic_he(3, 1, other, 0.7), synthetic_he(2, 2)])
    source[4] = 250  # glass only: too little tissue, the fallback
    ref = stain.fit_reference("macenko", synthetic_he(8, 3))
    got = stain.normalise(torch.from_numpy(source), ref).numpy()
    want = np.stack([macenko_reference(img, ref) for img in source])
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())


def test_macenko_undoes_a_change_of_stain_colours_and_amounts() -> None:
    other = np.stack([[0.50, 0.78, 0.38], [0.36, 0.82, 0.45]])
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    ref = stain.fit_reference("macenko", synthetic_he(8, 3))
    plain = torch.from_numpy(synthetic_he(4, 5))
    shifted = torch.from_numpy(synthetic_he(4, 5, other, amount=0.7))  # same tissue, restained
    a, b = stain.normalise(plain, ref), stain.normalise(shifted, ref)
    before = (plain.float() - shifted.float()).abs().mean()
    after = (a.float() - b.float()).abs().mean()
    assert after < 0.1 * before, (float(before), float(after))


def test_one_slide_source_is_used_for_every_patch() -> None:
    ref = stain.fit_reference("macenko", synthetic_he(8, 3))
    x = torch.from_numpy(synthetic_he(4, 6, amount=0.8))
    source = stain.fit_source(ref, x)
    one_by_one = torch.cat([stain.normalise(x[i : i + 1], ref, source) for i in range(4)])
    torch.testing.assert_close(stain.normalise(x, ref, source), one_by_one)
    assert (stain.normalise(x, ref, source).float() - x.float()).abs().mean() > 1


# ---------------------------------------------------------------------------- Reinhard


def test_reinhard_gives_each_patch_the_reference_statistics() -> None:
    ref = stain.fit_reference("reinhard", synthetic_he(8, 3))
    x = np.concatenate([synthetic_he(2, 7, amount=0.6), synthetic_he(2, 8, amount=1.3)])
    np.testing.assert_allclose(
        stain.to_lab(torch.from_numpy(x)).double().numpy()[0].T, lab_reference(x[0]), atol=1e-5
    )
    out = stain.normalise(torch.from_numpy(x), ref).numpy()
    for img in out:
        lab = lab_reference(img)
        np.testing.assert_allclose(lab.mean(0), ref.mean, atol=0.01)
        np.testing.assert_allclose(lab.std(0), ref.std, rtol=0.1, atol=0.003)


# ---------------------------------------------------------------------------- the reference


def test_reference_validation_and_dict_round_trip() -> None:
    ref = stain.fit_reference("macenko", synthetic_he(4, 3))
    assert stain.StainReference.from_dict(ref.to_dict()) == ref
    with pytest.raises(ValueError, match="matrix"):
        stain.StainReference("macenko", matrix=((1.0, 0.0),), concentration=(1.0, 1.0))
    with pytest.raises(ValueError, match="method"):
        stain.StainReference.from_dict({"method": "vahadane"})
    with pytest.raises(ValueError, match="tissue"):
        stain.fit_reference("macenko", np.full((2, 16, 16, 3), 250, np.uint8))
    images = synthetic_he(10, 9)
    picked = stain.sample_reference("reinhard", images, np.arange(10), seed=0, n=4)
    assert picked == stain.sample_reference("reinhard", images, np.arange(10), seed=0, n=4)
    assert stain.sample_reference("none", images, np.arange(10), seed=0) is None


def test_preprocessing_applies_the_reference_first() -> None:
    ref = stain.fit_reference("reinhard", synthetic_he(4, 3))
    x = torch.from_numpy(synthetic_he(3, 4, amount=0.6))
    pre = Preprocessing(input_size=48, stain=ref)
    expected = stain.normalise(x, ref).permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(pre(x), expected, atol=1 / 255 * 0.51, rtol=0)
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    assert (pre(x) - Preprocessing(input_size=48)(x)).abs().mean() > 0.01


# ---------------------------------------------------------------------------- augmentation


def test_stain_preset_knobs() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64) * 0.8 + 0.1
    same = hed_jitter(x, 0.0, 0.0, torch.Generator().manual_seed(1), vectors=0.0)
    torch.testing.assert_close(same, x, atol=1e-9, rtol=0)
    recoloured = hed_jitter(x, 0.0, 0.0, torch.Generator().manual_seed(1), vectors=0.1)
    assert (recoloured - x).abs().mean() > 1e-3
    y = gamma_jitter(x, 0.3, g)
    ratio = torch.log(y) / torch.log(x)  # one exponent per patch, in exp(+-0.3)
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio), atol=1e-6)
    assert bool(((ratio > 0.74) & (ratio < 1.35)).all())
    spec = augment_spec("stain")
    assert spec.hed_scale >= 0.35 and spec.gamma and spec.stain_vectors and spec.d4
    out = Augmenter(spec)(torch.from_numpy(synthetic_he(2, 1)), torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == (2, 48, 48, 3)


def test_the_benchmark_shifts_stay_in_range_and_change_colour() -> None:
    path = Path(__file__).resolve().parents[2] / "benchmarks/stain_shift.py"
    spec = importlib.util.spec_from_file_location("stain_shift", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["stain_shift"] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    x = torch.from_numpy(synthetic_he(2, 3))
    assert len(module.SHIFTS) >= 4
    for shift in module.SHIFTS:
        assert all(0.65 <= s <= 1.4 for s in shift.scale)
        y = module.shift_batch(x, shift)
        assert y.dtype == torch.uint8 and (y.float() - x.float()).abs().mean() > 1


# ---------------------------------------------------------------------------- through the commands


def test_predict_and_evaluate_normalise_alike(tmp_path: Path) -> None:
    """A tiny real model whose checkpoint carries a Macenko reference: ``predict`` and
    ``evaluate`` give the probabilities of the model on the normalised patches."""
    from tests.helpers import write_image

    from metastasis.checkpoint import Bundle, save_checkpoint, state_dict_cpu
    from metastasis.inference.evaluate import evaluate_checkpoint
    from metastasis.inference.predictor import Predictor
    from metastasis.models import create_model

    torch.manual_seed(0)
    model = create_model("baseline-cnn").eval()
    x = np.concatenate([synthetic_he(3, 11, amount=0.7), synthetic_he(3, 12)])
    x = np.tile(x, (1, 2, 2, 1))  # 96 x 96
    ref = stain.fit_reference("macenko", synthetic_he(8, 3))
    pre = Preprocessing(stain=ref)
    bundle = Bundle("baseline-cnn", {}, state_dict_cpu(model), pre, threshold=0.5)
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", bundle)
    for i, img in enumerate(x):
        write_image(tmp_path / "data" / str(i % 2) / f"p{i}.png", img)
    with torch.inference_mode():
        want = torch.sigmoid(model(pre(torch.from_numpy(x)))).numpy()
        plain = torch.sigmoid(model(Preprocessing()(torch.from_numpy(x)))).numpy()
    assert np.abs(want - plain).max() > 1e-4  # normalisation changes what the model sees
    predictor = Predictor.from_checkpoint(tmp_path / "run", engine="torch", device="cpu")
    np.testing.assert_allclose(predictor.predict_proba(x), want, atol=1e-5)
    evaluate_checkpoint(
        tmp_path / "run", tmp_path / "data", tmp_path / "eval", engine="torch", device="cpu",
        progress=False, gallery=0,
    )  # fmt: skip
    import pandas as pd

    table = pd.read_csv(tmp_path / "eval" / "predictions.csv").set_index("id")
    got = table.loc[[f"p{i}" for i in range(len(x))], "probability"].to_numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
