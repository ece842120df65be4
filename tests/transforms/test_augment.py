"""Tests for metastasis.transforms.augment: shapes and dtypes of every preset, the dihedral group,
HED stain jitter against scikit-image, colour jitter's invariants, settings validation, the
kornia steps and the PCam label region (the centre 32x32, which D4 maps onto itself)."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import pytest
import torch
from skimage.color import combine_stains, hed_from_rgb, rgb2hed, rgb_from_hed

from metastasis.data import synthetic
from metastasis.errors import MetastasisError
from metastasis.transforms import augment
from metastasis.transforms.augment import (
    AUGMENT_PRESETS,
    HED_FROM_RGB,
    PRESETS,
    RGB_FROM_HED,
    Augmenter,
    AugmentSpec,
    augment_spec,
    colour_jitter,
    d4_inverse,
    d4_view,
    hed_jitter,
    random_d4,
)

OD_UNIT = -math.log(1e-6)  # scikit-image divides optical density by this
GRAY = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
CENTRE = slice(32, 64)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(n: int = 16, seed: int = 0, size: int = 96) -> torch.Tensor:
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=_gen(seed))


def _tissue(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(synthetic.make_patches(n, seed=seed)[0])


def _float_batch(n: int, low: float, high: float, seed: int, size: int = 16) -> torch.Tensor:
    """Float64 NCHW in [low, high]."""
    u = torch.rand(n, 3, size, size, generator=_gen(seed), dtype=torch.float64)
    return low + (high - low) * u


def _gray(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("nchw,c->nhw", x, GRAY.to(x.dtype))


# Every preset, plus "strong" with every random step switched on for every patch.
SPECS = {name: PRESETS[name] for name in AUGMENT_PRESETS} | {
    "strong-always": augment_spec("strong", {"affine_p": 1, "blur_p": 1, "noise_p": 1})
}


# ---------------------------------------------------------------------------- the pipeline


@pytest.mark.parametrize("name", list(SPECS))
def test_every_preset_keeps_shape_dtype_device_and_input(name: str) -> None:
    x = _tissue(8)
    before = x.clone()
    out = Augmenter(SPECS[name])(x, _gen(1))
    assert out.shape == (8, 96, 96, 3)
    assert out.dtype == torch.uint8 and out.device == x.device
    assert torch.equal(x, before), "the input batch must not be modified in place"


@pytest.mark.parametrize("name", list(SPECS))
def test_every_preset_takes_an_empty_batch(name: str) -> None:
    out = Augmenter(SPECS[name])(torch.zeros(0, 96, 96, 3, dtype=torch.uint8), _gen(0))
    assert out.shape == (0, 96, 96, 3) and out.dtype == torch.uint8


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(2, 96, 96, 3),  # float
        torch.zeros(2, 96, 96, 3, dtype=torch.int64),
        torch.zeros(96, 96, 3, dtype=torch.uint8),  # no batch dimension
        torch.zeros(2, 3, 96, 96, dtype=torch.uint8),  # NCHW
        torch.zeros(2, 96, 96, 4, dtype=torch.uint8),  # RGBA
    ],
    ids=["float32", "int64", "HWC", "NCHW", "RGBA"],
)
@pytest.mark.parametrize("name", ["none", "d4", "strong"])
def test_augmenter_rejects_other_inputs(bad: torch.Tensor, name: str) -> None:
    with pytest.raises(ValueError, match="expected uint8 N x H x W x 3"):
        Augmenter(PRESETS[name])(bad)


def test_none_and_zero_strengths_are_the_identity() -> None:
    x = _batch(8)
    assert torch.equal(Augmenter(PRESETS["none"])(x, _gen(0)), x)
    zero = AugmentSpec(
        hed_scale=0, hed_shift=0, translate=0.1, scale=0.1, affine_p=0, noise_std=0.1
    )
    assert not zero.needs_float
    assert torch.equal(Augmenter(zero)(x, _gen(0)), x)


def test_augmenter_is_reproducible_from_its_generator_alone() -> None:
    """Every random step, kornia's included, follows the generator passed in (a resumed run
    must draw the same numbers), and the global RNG is neither read nor advanced."""
    x = _tissue(8)
    aug = Augmenter(SPECS["strong-always"])
    torch.manual_seed(123)
    a = aug(x, _gen(5))
    torch.manual_seed(456)
    state = torch.get_rng_state()
    b = aug(x, _gen(5))
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state), "the global RNG must not be advanced"
    assert not torch.equal(a, aug(x, _gen(6)))


def test_labels_are_untouched_and_batch_size_kept() -> None:
    images, labels = synthetic.make_patches(16, seed=2)
    labels_before = labels.copy()
    params = list(inspect.signature(Augmenter.__call__).parameters)
    assert params == ["self", "x", "generator"], "the augmenter sees images only, never labels"
    out = Augmenter(SPECS["strong-always"])(torch.from_numpy(images), _gen(0))
    assert out.shape[0] == len(labels)
    np.testing.assert_array_equal(labels, labels_before)


@pytest.mark.parametrize("name", ["flips", "d4"])
def test_the_labelled_centre_stays_the_centre(name: str) -> None:
    """PCam's label refers to the centre 32x32; every D4 view maps it exactly onto itself."""
    x = _batch(64, seed=3)  # channels 1, 2: asymmetric noise everywhere
    x[..., 0] = 0
    x[:, CENTRE, CENTRE, 0] = 255  # channel 0 marks the centre
    centre = torch.zeros(96, 96, dtype=torch.bool)
    centre[CENTRE, CENTRE] = True
    out = Augmenter(PRESETS[name])(x, _gen(4))
    assert not torch.equal(out, x)  # something moved
    for i in range(len(x)):
        assert torch.equal(out[i, ..., 0] == 255, centre)
        assert torch.equal(out[i, ..., 0] == 0, ~centre)
        # and the centre's own content is a symmetry of the input's centre
        views = [d4_view(x[i : i + 1, CENTRE, CENTRE], k)[0] for k in range(8)]
        assert any(torch.equal(out[i, CENTRE, CENTRE], v) for v in views)


def test_translate_scale_and_blur_keep_shape_and_change_pixels() -> None:
    x = _tissue(8)
    spec = AugmentSpec(translate=0.1, scale=0.2, affine_p=1.0, blur_p=1.0, blur_sigma=1.5)
    assert spec.needs_float
    out = Augmenter(spec)(x, _gen(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    changed = (out != x).flatten(1).any(1)
    assert bool(changed.all()), "every patch is shifted/zoomed and blurred with p = 1"


def test_affine_and_blur_with_p_zero_equal_the_colour_only_output() -> None:
    x = _tissue(8)
    colour = AugmentSpec(d4=True, hed_scale=0.1, brightness=0.2, hue=0.05)
    with_off_geometry = augment_spec(
        "strong",
        {k: getattr(colour, k) for k in ("d4", "hed_scale", "hed_shift", "brightness", "hue")}
        | {"contrast": 0, "saturation": 0, "affine_p": 0, "blur_p": 0, "noise_p": 0},
    )
    assert with_off_geometry.translate > 0 and with_off_geometry.blur_sigma > 0
    a = Augmenter(colour)(x, _gen(9))
    b = Augmenter(with_off_geometry)(x, _gen(9))
    assert torch.equal(a, b)


def test_noise_is_applied_to_the_drawn_share() -> None:
    x = torch.full((64, 96, 96, 3), 128, dtype=torch.uint8)
    out = Augmenter(AugmentSpec(noise_p=0.5, noise_std=0.05))(x, _gen(0))
    noisy = (out != x).flatten(1).any(1)
    assert 16 <= int(noisy.sum()) <= 48
    std = (out[noisy].float() - 128).std().item() / 255
    assert 0.04 < std < 0.06
    assert torch.equal(out[~noisy], x[~noisy])


# ---------------------------------------------------------------------------- dihedral group


def _asymmetric(n: int = 2) -> torch.Tensor:
    return torch.arange(n * 6 * 6 * 3, dtype=torch.int64).view(n, 6, 6, 3)


@pytest.mark.parametrize("k", range(8))
def test_d4_inverse_undoes_each_view(k: int) -> None:
    x = _batch(4, size=96)
    assert torch.equal(d4_inverse(d4_view(x, k), k), x)
    rect = torch.arange(2 * 4 * 7 * 3).view(2, 4, 7, 3)  # also on non-square maps
    assert torch.equal(d4_inverse(d4_view(rect, k), k), rect)


def test_d4_views_are_the_eight_distinct_symmetries() -> None:
    x = _asymmetric()
    views = [d4_view(x, k) for k in range(8)]
    for i in range(8):
        for j in range(i + 1, 8):
            assert not torch.equal(views[i], views[j]), (i, j)
    for k in range(4):
        assert torch.equal(views[k], torch.rot90(x, k, dims=(1, 2)))
    for k in range(4, 8):  # the reflections: each is its own inverse
        assert torch.equal(d4_view(views[k], k), x)
    # closed under composition: a view of a view is a view
    for i in range(8):
        for j in range(8):
            twice = d4_view(views[i], j)
            assert any(torch.equal(twice, v) for v in views)


@pytest.mark.parametrize("k", [-1, 8])
def test_d4_view_rejects_out_of_range(k: int) -> None:
    with pytest.raises(ValueError, match="0-7"):
        d4_view(_asymmetric(), k)
    with pytest.raises(ValueError, match="0-7"):
        d4_inverse(_asymmetric(), k)


def test_random_d4_draws_each_view_uniformly_per_patch() -> None:
    x = _batch(256, seed=1, size=12)
    out = random_d4(x, _gen(2))
    views = torch.stack([d4_view(x, k) for k in range(8)])  # (8, n, h, w, 3)
    hits = (views == out.unsqueeze(0)).flatten(2).all(2)  # (8, n)
    assert bool((hits.sum(0) == 1).all()), "each output is exactly one view of its own patch"
    counts = hits.sum(1)
    assert int(counts.sum()) == 256
    assert int(counts.min()) >= 16 and int(counts.max()) <= 48, counts.tolist()  # mean 32


def test_random_d4_is_seeded_and_needs_square_images() -> None:
    x = _batch(32)
    assert torch.equal(random_d4(x, _gen(3)), random_d4(x, _gen(3)))
    assert not torch.equal(random_d4(x, _gen(3)), random_d4(x, _gen(4)))
    with pytest.raises(ValueError, match="square"):
        random_d4(torch.zeros(2, 8, 6, 3, dtype=torch.uint8))


# ---------------------------------------------------------------------------- HED


def _stains_od(img: np.ndarray) -> np.ndarray:
    """Optical-density stains of an HWC float image, by numpy and scikit-image's matrix."""
    return -np.log(np.maximum(img, 1e-6)) @ hed_from_rgb


def test_stain_matrices_and_units_are_scikit_images() -> None:
    np.testing.assert_allclose(RGB_FROM_HED.numpy(), rgb_from_hed, rtol=0, atol=1e-12)
    np.testing.assert_allclose(HED_FROM_RGB.numpy(), hed_from_rgb, rtol=0, atol=1e-12)
    img = _tissue(2)[0].numpy().astype(np.float64) / 255
    ours, skimage = _stains_od(img), rgb2hed(img) * OD_UNIT
    positive = ours > 0
    assert positive.mean() > 0.3
    np.testing.assert_allclose(ours[positive], skimage[positive], rtol=1e-10, atol=1e-10)
    assert np.all(skimage[~positive] == 0)  # rgb2hed clips at 0, ours does not


def test_hed_jitter_without_strength_is_the_identity() -> None:
    x = _float_batch(4, 0.0, 1.0, seed=0).float()
    x[0, :, 0, 0] = 0.0
    x[0, :, 0, 1] = 1.0
    torch.testing.assert_close(hed_jitter(x, 0.0, 0.0, _gen(0)), x, rtol=0, atol=1e-5)
    x64 = _float_batch(4, 0.01, 1.0, seed=1)
    torch.testing.assert_close(hed_jitter(x64, 0.0, 0.0, _gen(0)), x64, rtol=0, atol=1e-12)


def test_hed_jitter_of_vanishing_strength_round_trips_uint8_exactly() -> None:
    """The float path of the Augmenter (uint8 -> [0, 1] -> OD -> back -> uint8) loses nothing."""
    x = torch.arange(256, dtype=torch.uint8).view(1, 16, 16, 1).expand(1, 16, 16, 3).clone()
    x = torch.cat([x, _batch(7, size=16), x.roll(1, dims=3)])
    spec = AugmentSpec(hed_scale=1e-9, hed_shift=1e-9)
    assert spec.needs_float
    assert torch.equal(Augmenter(spec)(x, _gen(0)), x)
    assert torch.equal(Augmenter(AugmentSpec(hed_scale=0, hed_shift=0))(x, _gen(0)), x)


def test_hed_jitter_matches_scikit_image() -> None:
    n, scale, shift, seed = 4, 0.3, 0.2, 7
    x = _float_batch(n, 0.02, 1.0, seed=11)
    out = hed_jitter(x, scale, shift, _gen(seed))
    # the same draws: 3n factors U(1 - scale, 1 + scale), then 3n shifts U(-shift, shift)
    u = torch.rand(6 * n, generator=_gen(seed), dtype=torch.float64)
    alpha = (1 - scale + 2 * scale * u[: 3 * n]).view(n, 3)
    beta = (-shift + 2 * shift * u[3 * n :]).view(n, 3)
    for i in range(n):
        img = x[i].permute(1, 2, 0).numpy()
        stains = _stains_od(img) * alpha[i].numpy() + beta[i].numpy()
        ref = combine_stains(stains / OD_UNIT, rgb_from_hed)  # clipped to [0, 1]
        got = out[i].permute(1, 2, 0).clamp(0, 1).numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_hed_jitter_is_a_per_patch_per_stain_affine_map_within_bounds() -> None:
    """Independent of the draw order: regress each output stain on its input stain."""
    n, scale, shift = 6, 0.2, 0.1
    x = _tissue(n, seed=4).permute(0, 3, 1, 2).double().div(255).clamp_min(1 / 255)
    out = hed_jitter(x, scale, shift, _gen(3))
    slopes = np.empty((n, 3))
    for i in range(n):
        s_in = _stains_od(x[i].permute(1, 2, 0).numpy()).reshape(-1, 3)
        s_out = _stains_od(out[i].permute(1, 2, 0).numpy()).reshape(-1, 3)
        for c in range(3):
            a, b = np.polyfit(s_in[:, c], s_out[:, c], 1)
            np.testing.assert_allclose(s_out[:, c], a * s_in[:, c] + b, atol=1e-9)
            assert 1 - scale <= a <= 1 + scale and -shift <= b <= shift
            slopes[i, c] = a
    assert len(np.unique(slopes.round(6))) == slopes.size  # drawn per patch and per stain


def test_more_haematoxylin_darkens_along_the_haematoxylin_vector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """alpha_H = 1.5 (E, DAB 1, no shift): a purple (haematoxylin-rich) pixel gets darker in
    every channel, its optical density growing along the haematoxylin stain vector (most in
    green, least in blue), while a pixel with eosin only is left as it was."""
    draws = iter([torch.tensor([1.5, 1.0, 1.0]), torch.zeros(3)])
    monkeypatch.setattr(augment, "_uniform", lambda *a, **k: next(draws).to(torch.float64))
    purple_od = np.array([0.8, 0.2, 0.0]) @ rgb_from_hed  # H 0.8, E 0.2
    pink_od = np.array([0.0, 0.6, 0.0]) @ rgb_from_hed  # eosin only
    rgb = np.exp(-np.stack([purple_od, pink_od]))  # two pixels, side by side
    x = torch.tensor(rgb.T.copy()).view(1, 3, 1, 2)
    out = hed_jitter(x, 0.5, 0.0)
    before, after = x[0, :, 0, 0], out[0, :, 0, 0]
    assert bool((after < before).all()), (before, after)
    d_od = (torch.log(before) - torch.log(after)).numpy()
    np.testing.assert_allclose(d_od, 0.5 * 0.8 * rgb_from_hed[0], atol=1e-9)
    assert d_od[1] > d_od[0] > d_od[2]
    torch.testing.assert_close(out[0, :, 0, 1], x[0, :, 0, 1], rtol=0, atol=1e-12)
    assert next(draws, None) is None  # both draws used: factors, then shifts


# ---------------------------------------------------------------------------- colour


def test_colour_jitter_without_strength_is_the_identity() -> None:
    x = _float_batch(4, 0.0, 1.0, seed=0).float()
    assert torch.equal(colour_jitter(x.clone(), 0, 0, 0, 0, _gen(0)), x)
    # the colour-matrix path at (almost) no saturation and no hue change
    torch.testing.assert_close(
        colour_jitter(x.clone(), 0, 0, 1e-12, 0, _gen(0)), x, atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        colour_jitter(x.clone(), 0, 0, 0, 1e-12, _gen(0)), x, atol=1e-6, rtol=0
    )


def test_brightness_scales_each_patch_by_its_drawn_factor() -> None:
    n, strength = 8, 0.3
    x = _float_batch(n, 0.0, 1.0, seed=2).float()
    out = colour_jitter(x.clone(), strength, 0, 0, 0, _gen(5))
    u = torch.rand(n, generator=_gen(5), dtype=torch.float64)
    factor = (1 - strength + 2 * strength * u).float().view(n, 1, 1, 1)
    torch.testing.assert_close(out, (x * factor).clamp(0, 1), rtol=0, atol=1e-7)
    # and independent of the draw order: each patch is one factor times its input
    mid = (x > 0.05) & (x < 0.7)  # unclipped for any factor <= 1.3
    ratios = [out[i][mid[i]] / x[i][mid[i]] for i in range(n)]
    for r in ratios:
        assert float(r.max() - r.min()) < 1e-5
        assert 1 - strength - 1e-6 <= float(r.median()) <= 1 + strength + 1e-6


def test_contrast_keeps_mean_grey_and_scales_spread() -> None:
    n, strength = 8, 0.2
    x = _float_batch(n, 0.4, 0.6, seed=3)  # no clipping at any drawn factor
    out = colour_jitter(x.clone(), 0, strength, 0, 0, _gen(1))
    g_in, g_out = _gray(x), _gray(out)
    torch.testing.assert_close(g_out.mean((1, 2)), g_in.mean((1, 2)), rtol=0, atol=1e-12)
    ratio = (g_out.std((1, 2)) / g_in.std((1, 2))).numpy()
    assert np.all((1 - strength - 1e-9 <= ratio) & (ratio <= 1 + strength + 1e-9))
    assert np.ptp(ratio) > 0.05  # drawn per patch


def test_saturation_keeps_luma_and_scales_chroma() -> None:
    n, strength = 8, 0.5
    x = _float_batch(n, 0.35, 0.65, seed=4)
    out = colour_jitter(x.clone(), 0, 0, strength, 0, _gen(2))
    g_in = _gray(x).unsqueeze(1)
    torch.testing.assert_close(_gray(out).unsqueeze(1), g_in, rtol=0, atol=1e-12)
    for i in range(n):  # out - grey = s * (x - grey), one s per patch
        chroma_in, chroma_out = (x[i] - g_in[i]).flatten(), (out[i] - g_in[i]).flatten()
        s = float(chroma_out @ chroma_in / (chroma_in @ chroma_in))
        assert 1 - strength <= s <= 1 + strength
        torch.testing.assert_close(chroma_out, s * chroma_in, rtol=0, atol=1e-12)


def test_hue_keeps_luma_and_chroma_magnitude() -> None:
    x = 0.5 + 0.08 * (_float_batch(8, 0.0, 1.0, seed=5) - 0.5)  # low chroma: no clipping
    out = colour_jitter(x.clone(), 0, 0, 0, 0.5, _gen(3))
    yiq = augment._RGB_TO_YIQ
    a, b = torch.einsum("dc,nchw->ndhw", yiq, x), torch.einsum("dc,nchw->ndhw", yiq, out)
    torch.testing.assert_close(b[:, 0], a[:, 0], rtol=0, atol=1e-12)
    torch.testing.assert_close(b[:, 1:].norm(dim=1), a[:, 1:].norm(dim=1), rtol=0, atol=1e-12)
    assert (out - x).abs().max() > 0.01  # the hue did turn


def test_saturation_and_hue_keep_grey_pixels_grey() -> None:
    grey = torch.rand(6, 1, 8, 8, generator=_gen(6), dtype=torch.float64).expand(6, 3, 8, 8)
    out = colour_jitter(grey.clone(), 0, 0, 0.9, 0.5, _gen(7))
    torch.testing.assert_close(out, grey, rtol=0, atol=1e-12)


def test_colour_jitter_stays_in_unit_range() -> None:
    x = _float_batch(16, 0.0, 1.0, seed=8, size=24).float()
    for strengths in [(0.9, 0, 0, 0), (0, 0.9, 0, 0), (0, 0, 0.9, 0), (0, 0, 0, 0.5)]:
        out = colour_jitter(x.clone(), *strengths, generator=_gen(9))
        assert float(out.min()) >= 0 and float(out.max()) <= 1, strengths
    out = colour_jitter(x.clone(), 0.9, 0.9, 0.9, 0.5, _gen(10))
    assert float(out.min()) >= 0 and float(out.max()) <= 1


# ---------------------------------------------------------------------------- settings


def test_augment_spec_applies_overrides() -> None:
    assert augment_spec("strong") == PRESETS["strong"]
    spec = augment_spec("pathology", {"hed_scale": 0.2, "d4": False, "blur_p": 1})
    assert spec.hed_scale == 0.2 and spec.d4 is False
    assert spec.blur_p == 1.0 and isinstance(spec.blur_p, float)
    assert spec.brightness == PRESETS["pathology"].brightness  # the rest is the preset's


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("true", True), ("false", False), ("no", False), (0, False)],
)
def test_augment_spec_reads_switches_strictly(value: Any, expected: bool) -> None:
    """A YAML or command-line "false" must switch D4 off, not on (bool("false") is True)."""
    assert augment_spec("d4", {"d4": value}).d4 is expected


def test_augment_spec_names_unknown_settings_and_presets() -> None:
    with pytest.raises(MetastasisError, match=r"hed_scal\b.*known: flips"):
        augment_spec("d4", {"hed_scal": 0.1})
    with pytest.raises(MetastasisError, match="unknown augmentation preset 'wild'"):
        augment_spec("wild")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("hed_scale", -0.1),
        ("hed_shift", -0.01),
        ("hed_scale", 1.0),
        ("brightness", 1.0),
        ("contrast", 1.5),
        ("saturation", 1),
        ("scale", 1.0),
        ("hue", 0.6),
        ("affine_p", 1.5),
        ("blur_p", 2),
        ("noise_p", 1.01),
        ("noise_std", -1),
        ("translate", float("nan")),
        ("blur_sigma", float("inf")),
        ("hue", "abc"),
        ("noise_std", None),
        ("d4", "maybe"),
        ("d4", 2),
    ],
)
def test_augment_spec_rejects_invalid_values(key: str, value: Any) -> None:
    with pytest.raises(MetastasisError, match=key):
        augment_spec("d4", {key: value})


def test_every_preset_is_valid_and_none_is_identity() -> None:
    for name in AUGMENT_PRESETS:
        spec = PRESETS[name]
        assert AugmentSpec(**{k: getattr(spec, k) for k in spec.__dataclass_fields__}) == spec
    assert not PRESETS["none"].needs_float and not PRESETS["d4"].needs_float
    assert PRESETS["pathology"].needs_float and PRESETS["strong"].needs_float
