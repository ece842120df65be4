"""inference.explain: Grad-CAM heat maps (pytorch-grad-cam) and their overlays."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from tests.helpers import model_families
from torch import nn

from metastasis.checkpoint import load_checkpoint
from metastasis.cli import main
from metastasis.data import synthetic
from metastasis.data.cache import open_split
from metastasis.engine.loop import train_one_epoch
from metastasis.engine.trainer import RunResult
from metastasis.inference.explain import (
    EMPTY_BELOW,
    cam_empty,
    centre_box,
    centre_share,
    explain_to_folder,
    explained_patches,
    gradcam,
    outline_centre,
    overlay,
)
from metastasis.inference.predictor import Predictor
from metastasis.models import create_model, default_preprocessing, target_layer
from metastasis.transforms.augment import d4_view
from metastasis.transforms.presets import Preprocessing


@pytest.fixture(scope="module")
def patches() -> np.ndarray:
    images, _ = synthetic.make_patches(6, seed=1)
    return images


@pytest.mark.parametrize("name", model_families())
def test_gradcam_explains_every_registered_model(name: str, patches: np.ndarray) -> None:
    timm = "cnn" not in name and name != "ensemble"  # the ensemble's default: two CNNs
    torch.manual_seed(0)
    model = create_model(name, **({"pretrained": False} if timm else {})).eval()
    prep = default_preprocessing(name)
    if timm:  # a small input keeps the big backbones fast; the maps come back at 96 x 96
        prep = Preprocessing(input_size=48, mean=prep.mean, std=prep.std)
    layer = target_layer(name, model)
    heat = gradcam(model, patches[:3], arch=name, preprocessing=prep)
    assert heat.shape == (3, 96, 96) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    peaks = heat.reshape(3, -1).max(1)  # each map scaled to its maximum, or blank where
    assert (np.isclose(peaks, 1.0, atol=1e-3) | (peaks == 0)).all()  # nothing raises the logit
    assert model.training is False
    assert all(p.grad is None for p in model.parameters())  # nothing left behind
    assert not layer._forward_hooks  # pytorch-grad-cam's hooks removed


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
    assert (out[top - 1, left - 1 : right + 2] == 40).all()  # the dark line outside
    plain = outline_centre(patches[0])
    assert (plain[5:30, 5:30] == patches[0][5:30, 5:30]).all()
    assert (plain[64:, 65:] == patches[0][64:, 65:]).all()


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


def test_cam_empty() -> None:
    heat = np.zeros((3, 96, 96), dtype=np.float32)
    heat[0, 40, 40] = 1.0
    heat[1, 40, 40] = EMPTY_BELOW / 2  # below one step of the colour map: a flat overlay
    assert cam_empty(heat).tolist() == [False, True, True]
    assert cam_empty(heat[0]).shape == () and not cam_empty(heat[0])
    assert cam_empty(np.full((96, 96), np.nan)) and cam_empty(np.zeros((0, 96, 96))).shape == (0,)


def test_a_confident_negative_has_an_empty_heat_map(patches: np.ndarray) -> None:
    """Grad-CAM weighs the target layer by the tumour logit's gradient: a head that ignores
    the features (zero weights, a strongly negative bias) leaves nothing to show."""
    model = _confident_negative(create_model("baseline-cnn")).eval()
    heat = gradcam(model, patches, arch="baseline-cnn")
    assert (heat == 0).all() and cam_empty(heat).all()
    with torch.no_grad():
        logits = model(default_preprocessing("baseline-cnn")(torch.from_numpy(patches)))
    assert (torch.sigmoid(logits) < 0.01).all()


def _confident_negative(model: nn.Module) -> nn.Module:
    """``model`` with its last linear layer's weights zeroed and its bias at -6 (p = 0.0025)."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        assert last.bias is not None
        last.bias.fill_(-6.0)
    return model


def _png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    return np.asarray(imread(path))


def test_explain_says_when_a_heat_map_has_nothing_to_show(
    trained_run: RunResult, demo_data: Path, tmp_path: Path
) -> None:
    """A blank blue overlay reads as a broken image: the CSV flags it and the PNG says so."""
    from metastasis.checkpoint import save_checkpoint, state_dict_cpu
    from metastasis.reports.explanations import plot_explanation
    from metastasis.reports.figures import save_figure

    trained = load_checkpoint(trained_run.run_dir)
    folder = demo_data / "valid"
    valid = open_split(folder, progress=False)
    peaks = gradcam(trained, np.array(valid.images[:])).reshape(len(valid.ids), -1).max(1)
    assert 0 < (peaks == 0).sum() < len(peaks)  # 55 of 64 seen: a 1-epoch model says little
    rows = [int(np.argmax(peaks > 0)), int(np.argmax(peaks == 0))]
    ids = [str(valid.ids[r]) for r in rows]
    loud = explain_to_folder(
        trained_run.run_dir, folder, tmp_path / "loud", ids=ids, progress=False
    )
    assert loud["cam_empty"].tolist() == [False, True]
    assert loud["centre_share"].isna().tolist() == [False, True]

    bundle = load_checkpoint(trained_run.run_dir)  # the same model, its head made to ignore all
    bundle.state_dict = state_dict_cpu(_confident_negative(bundle.build_model()))
    negative = save_checkpoint(tmp_path / "negative.pt", bundle)
    quiet = explain_to_folder(negative, folder, tmp_path / "quiet", ids=ids, progress=False)
    assert (quiet["probability"] < 0.01).all()
    saved = pd.read_csv(tmp_path / "quiet" / "explanations.csv")
    assert saved["cam_empty"].tolist() == [True, True] and saved["centre_share"].isna().all()

    # the PNG carries the words: the same picture without them differs, in the overlay only
    images = np.asarray(valid.images[rows])
    heats = gradcam(bundle, images)
    assert (heats == 0).all()
    item = explained_patches(
        images,
        heats,
        ids,
        quiet["probability"].to_numpy(),
        bundle.threshold,
        valid.labels[rows],
        bundle.class_names,
    )[0]
    assert item.cam_empty
    written = _png(tmp_path / "quiet" / quiet["png"][0])
    save_figure(plot_explanation(item), tmp_path / "again.png")
    plain = save_figure(plot_explanation(replace(item, cam_empty=False)), tmp_path / "plain.png")
    np.testing.assert_array_equal(written, _png(tmp_path / "again.png"))
    unlike = np.argwhere((written != _png(plain)).any(-1))
    assert len(unlike) > 100
    height, width = written.shape[:2]
    assert (unlike[:, 1] > width / 2).all()  # right: the Grad-CAM overlay, not the patch
    assert (abs(unlike[:, 0] - height * 0.55) < height * 0.25).all()  # across its middle


@pytest.fixture(scope="module")
def learned_model() -> nn.Module:
    """regularised-cnn trained for 4 epochs on 320 synthetic patches (in memory, flips)."""
    images, labels = synthetic.make_patches(320, seed=11)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    prep = default_preprocessing("regularised-cnn")
    torch.manual_seed(0)
    model = create_model("regularised-cnn", dropout=0.1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        order = torch.randperm(len(x), generator=g)
        batches = [(x[order[i : i + 32]], y[order[i : i + 32]]) for i in range(0, len(x), 32)]
        train_one_epoch(
            model, batches, optimizer, lambda b: prep(d4_view(b, int(torch.randint(8, (1,)))))
        )
    return model.eval()


def test_grad_cam_of_a_trained_model_is_hottest_in_the_centre_of_positive_patches(
    learned_model: nn.Module,
) -> None:
    """Label 1 means tumour in the central 32x32; a model that learned it looks there."""
    images, labels = synthetic.make_patches(96, seed=101)
    with torch.no_grad():
        logits = learned_model(default_preprocessing("regularised-cnn")(torch.from_numpy(images)))
    assert roc_auc_score(labels, logits.numpy()) > 0.65  # it learned something (0.72-0.83 seen)
    positives = images[labels == 1]
    heat = gradcam(learned_model, positives, arch="regularised-cnn")
    # the hottest 32x32 window of each map: it overlaps the centre by at least half each way
    windows = F.avg_pool2d(torch.from_numpy(heat)[:, None], 32, stride=1)[:, 0]  # 65 x 65
    best = windows.reshape(len(heat), -1).argmax(1).numpy()
    offset = np.maximum(abs(best // 65 - 32), abs(best % 65 - 32))
    near = (offset <= 16).mean()
    assert near > 0.5, near  # by chance: 33^2 / 65^2 = 0.26 of the windows are that close
    share = np.nanmean(centre_share(heat))
    assert share > 1.5 / 9, share  # the centre is 1/9 of the area


def test_explain_command_writes_grid_patches_and_table(
    trained_run: RunResult, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "explained"
    argv = ["explain", "--checkpoint", str(trained_run.run_dir), "--data", str(demo_data)]
    assert main([*argv, "--split", "valid", "--out", str(out), "--n", "5", "--no-progress"]) == 0
    assert "explained 5 patches" in capsys.readouterr().out
    table = pd.read_csv(out / "explanations.csv")
    assert list(table.columns) == [
        "id",
        "probability",
        "prediction",
        "truth",
        "centre_share",
        "cam_empty",
        "png",
    ]
    assert len(table) == 5 and set(table["truth"]) == {0, 1}  # both classes drawn
    assert table["cam_empty"].dtype == bool
    assert (table["cam_empty"] == table["centre_share"].isna()).all()  # both say: map empty
    bundle = load_checkpoint(trained_run.run_dir)
    assert (table["prediction"] == (table["probability"] >= bundle.threshold)).all()
    for name in [*table["png"], "grid.png"]:
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in (out / "patches").iterdir()) == sorted(
        Path(n).name for n in table["png"]
    )
    # the same patches by id: the same probabilities, which are predict's
    ids = list(table["id"][:2])
    again = explain_to_folder(
        trained_run.run_dir, demo_data / "valid", tmp_path / "again", ids=ids, progress=False
    )
    assert list(again["id"]) == ids
    np.testing.assert_allclose(again["probability"], table["probability"][:2], atol=1e-6)
    cached = open_split(demo_data / "valid", progress=False)
    rows = [list(cached.ids).index(i) for i in ids]
    expected = Predictor.from_checkpoint(trained_run.run_dir).predict_proba(cached.images[rows])
    np.testing.assert_allclose(again["probability"], expected, atol=1e-5)


def test_explain_refuses_unknown_ids_with_one_line(
    trained_run: RunResult, demo_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["explain", "--checkpoint", str(trained_run.run_dir), "--data", str(demo_data / "valid")]
    rc = main([*argv, "--out", str(tmp_path / "x"), "--ids", "nope", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "no patch with id nope" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_gradcam_calls_from_several_threads_take_turns(patches: np.ndarray) -> None:
    torch.manual_seed(0)
    model = create_model("regularised-cnn").eval()
    alone = [gradcam(model, patches[k : k + 2], arch="regularised-cnn") for k in (0, 2, 4)]
    with ThreadPoolExecutor(3) as pool:
        together = list(
            pool.map(
                lambda k: gradcam(model, patches[k : k + 2], arch="regularised-cnn"), (0, 2, 4)
            )
        )
    for a, b in zip(alone, together):
        np.testing.assert_allclose(a, b, atol=1e-6)
