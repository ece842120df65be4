"""Grad-CAM explanations: where in a patch the model found evidence of tumour.

``gradcam`` runs pytorch-grad-cam's ``GradCAM`` (the ``grad-cam`` package) on the layer each
registered model names (``metastasis.models``' ``target_layer``), with the tumour logit as the
target, and returns one heat map per patch, scaled to [0, 1] per patch at the patch's own size.
``overlay`` blends a heat map onto its patch with the jet colour map and outlines the central
32 x 32 pixels, the region the label is about. ``centre_share`` says how much of a heat map lies
there, ``cam_empty`` whether a map has nothing to show (all zeros: nothing in the patch raises the
tumour logit, as for a confident negative). ``explain_to_folder`` (``metastasis explain``) writes
them for patches of a data set.

Grad-CAM needs gradients: it runs the PyTorch model in float32 (never an ONNX session), and it
adds hooks to the model while it runs, so calls from several threads (a web service) take turns.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from metastasis.data.cache import CachedSplit, open_split
from metastasis.errors import DataError, MetastasisError
from metastasis.inference.predictor import Predictor
from metastasis.predictions import TRUTH, predictions_frame, write_table
from metastasis.reports.explanations import Explained
from metastasis.transforms.presets import Preprocessing

log = logging.getLogger(__name__)

EXPLAIN_SPLITS = ("test", "valid", "val")  # the split chosen when data has several
GRID_MAX = 64  # tiles in grid.png; every patch still gets its own PNG
_TURN = threading.Lock()  # one Grad-CAM at a time: its hooks would see each other's passes
CHUNK = 32  # patches per Grad-CAM pass (activations and gradients of a chunk are kept)
CENTRE = 32  # side of the label region of a 96 x 96 patch, in pixels
OUTLINE = (255, 255, 255)  # colour of the centre's outline
SHADOW = (40, 40, 40)  # the line just outside it
EMPTY_BELOW = 1 / 255  # a heat map whose maximum is below this has nothing to show (cam_empty)


def _resolve(
    bundle_or_model: Any, preprocessing: Preprocessing | None, arch: str | None
) -> tuple[nn.Module, Preprocessing, str]:
    """(model, preprocessing, arch) from a Bundle, a Predictor or a bare module."""
    from metastasis.checkpoint import Bundle

    if isinstance(bundle_or_model, Bundle):
        b = bundle_or_model
        return b.build_model(), preprocessing or b.preprocessing, arch or b.arch
    model = getattr(bundle_or_model, "model", bundle_or_model)  # a Predictor: its model
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a Bundle, Predictor or nn.Module, got {type(model).__name__}")
    bundle = getattr(bundle_or_model, "bundle", None)
    arch = arch or (bundle.arch if bundle is not None else None) or getattr(model, "arch", None)
    if arch is None:
        raise MetastasisError("gradcam: give arch= (the registered model name) for a bare model")
    prep = preprocessing or getattr(bundle_or_model, "preprocessing", None)
    if prep is None:
        from metastasis.models import default_preprocessing

        prep = default_preprocessing(arch)
    return model, prep, arch


def gradcam(
    bundle_or_model: Any,
    images: np.ndarray,
    *,
    preprocessing: Preprocessing | None = None,
    arch: str | None = None,
) -> np.ndarray:
    """uint8 N x H x W x 3 patches -> float32 N x H x W heat maps in [0, 1] (Grad-CAM on the
    tumour logit).

    ``bundle_or_model``: a checkpoint ``Bundle`` (its model is built), a ``Predictor`` (its
    model, preprocessing and checkpoint's architecture are used) or an ``nn.Module`` (then
    ``arch``, the registered model name, is needed; ``preprocessing`` defaults to the model's
    registered one). A single H x W x 3 patch gives a 1 x H x W result. Each map is scaled to
    its own maximum (all zeros where nothing in the patch raises the tumour logit).
    """
    from metastasis.models import target_layer

    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected uint8 N x H x W x 3 patches, got {arr.dtype} {arr.shape}")
    model, prep, arch = _resolve(bundle_or_model, preprocessing, arch)
    out = np.zeros(arr.shape[:3], dtype=np.float32)
    if len(arr) == 0:
        return out
    with _TURN:
        _explain(model, prep, target_layer(arch, model), arr, out)
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0)


def _explain(
    model: nn.Module, prep: Preprocessing, layer: nn.Module, arr: np.ndarray, out: np.ndarray
) -> None:
    """Grad-CAM maps of ``arr`` (uint8 NHWC) into ``out`` (N x H x W), chunk by chunk."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    height, width = arr.shape[1:3]
    device = next(model.parameters()).device
    was_training = model.training
    cam = GradCAM(model=model, target_layers=[layer])
    try:
        with torch.inference_mode(False), torch.enable_grad():
            for start in range(0, len(arr), CHUNK):
                batch = torch.from_numpy(np.ascontiguousarray(arr[start : start + CHUNK]))
                x = prep(batch.to(device)).float().requires_grad_(True)
                targets = [BinaryClassifierOutputTarget(1)] * len(x)
                maps = torch.from_numpy(np.asarray(cam(input_tensor=x, targets=targets)))
                if maps.shape[-2:] != (height, width):
                    maps = F.interpolate(
                        maps[:, None].float(), size=(height, width), mode="bilinear"
                    )[:, 0]
                out[start : start + len(x)] = maps.numpy()
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def centre_box(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right), inclusive, of the central 32 x 32 of a 96 x 96 patch, scaled
    to ``height`` x ``width``."""
    top, left = round(height * (96 - CENTRE) / 2 / 96), round(width * (96 - CENTRE) / 2 / 96)
    bottom = round(height * (96 + CENTRE) / 2 / 96) - 1
    right = round(width * (96 + CENTRE) / 2 / 96) - 1
    return top, left, bottom, right


def outline_centre(image: np.ndarray, colour: tuple[int, int, int] = OUTLINE) -> np.ndarray:
    """A copy of the uint8 H x W x 3 ``image`` with the central 32 x 32 outlined: its border
    pixels in ``colour`` (1 px at 96 x 96), with a dark line just outside them so the outline
    also shows on white (fat, glass)."""
    out = np.array(image, dtype=np.uint8, copy=True)
    height, width = out.shape[:2]
    top, left, bottom, right = centre_box(height, width)
    t = max(1, round(height / 96))
    _ring(out, (top - t, left - t, bottom + t, right + t), t, np.array(SHADOW, dtype=np.uint8))
    _ring(out, (top, left, bottom, right), t, np.asarray(colour, dtype=np.uint8))
    return out


def _ring(out: np.ndarray, box: tuple[int, int, int, int], t: int, c: np.ndarray) -> None:
    top, left, bottom, right = (max(0, v) for v in box)
    out[top : top + t, left : right + 1] = c
    out[bottom - t + 1 : bottom + 1, left : right + 1] = c
    out[top : bottom + 1, left : left + t] = c
    out[top : bottom + 1, right - t + 1 : right + 1] = c


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """uint8 H x W x 3 patch + H x W heat -> uint8 H x W x 3 overlay (jet colour map), centre
    32x32 outlined.

    ``alpha`` is the weight of the colour map (0: the patch only, 1: the heat map only); the
    blend is pytorch-grad-cam's ``show_cam_on_image``."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    img = np.asarray(image)
    h = np.asarray(heat, dtype=np.float32)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected a uint8 H x W x 3 patch, got {img.dtype} {img.shape}")
    if h.shape != img.shape[:2]:
        raise ValueError(f"heat map {h.shape} does not match the patch {img.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    h = np.clip(np.nan_to_num(h, nan=0.0), 0.0, 1.0)
    blended = show_cam_on_image(
        img.astype(np.float32) / 255.0, h, use_rgb=True, image_weight=1.0 - alpha
    )
    return outline_centre(blended)


def centre_share(heat: np.ndarray) -> np.ndarray:
    """Fraction of each heat map's total in the central 32 x 32 (N x H x W -> N; H x W -> a
    0-d array). The centre is 1/9 of a patch: a map spread evenly gives 0.11. NaN where a
    map is all zeros."""
    h = np.asarray(heat, dtype=np.float64)
    top, left, bottom, right = centre_box(*h.shape[-2:])
    inner = h[..., top : bottom + 1, left : right + 1].sum(axis=(-2, -1))
    total = h.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inner / np.where(total > 0, total, 1.0), np.nan)


def cam_empty(heat: np.ndarray) -> np.ndarray:
    """True where a heat map has nothing to show (N x H x W -> N; H x W -> a 0-d array).

    pytorch-grad-cam shifts each map to a minimum of 0 and divides it by its maximum (plus 1e-7),
    after a ReLU, so a map from `gradcam` either reaches 1 or is zeros everywhere: where every
    weighted activation is negative (nothing in the patch raises the tumour logit, as for a
    confident negative) or the map is flat (a blank patch). Empty here: a maximum below
    ``EMPTY_BELOW``, one step of the overlay's 8-bit colour map, under which the overlay is
    a uniform blue whatever the map holds."""
    h = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0)
    return np.asarray(h.max(axis=(-2, -1), initial=0.0) < EMPTY_BELOW)


def explained_patches(
    images: np.ndarray,
    heats: np.ndarray,
    ids: Sequence[str],
    probabilities: np.ndarray,
    threshold: float,
    truths: np.ndarray | None = None,
    class_names: Sequence[str] = ("normal", "tumour"),
    alpha: float = 0.4,
) -> list[Explained]:
    """What the pictures show of each patch (``truths``: 0/1, -1 or None where unknown); a
    patch whose heat map is empty (`cam_empty`) is marked so its overlay says so."""
    empty = cam_empty(heats)
    items = []
    for k, image in enumerate(images):
        truth = None if truths is None or truths[k] < 0 else class_names[int(truths[k])]
        items.append(
            Explained(
                id=str(ids[k]),
                patch=outline_centre(image),
                overlay=overlay(image, heats[k], alpha),
                probability=float(probabilities[k]),
                prediction=class_names[int(probabilities[k] >= threshold)],
                truth=truth,
                cam_empty=bool(empty[k]),
            )
        )
    return items


def _choose_rows(cached: CachedSplit, ids: Sequence[str] | None, n: int, seed: int) -> np.ndarray:
    """Rows of ``cached`` to explain: the ``ids`` given (in that order), else ``n`` usable rows
    drawn at random with ``seed`` (half from each class when labelled), in data order."""
    usable = cached.usable_indices()
    if ids:
        row_of = {str(i): r for r, i in enumerate(cached.ids)}
        unknown = [i for i in ids if i not in row_of]
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise DataError(f"{cached.name}: no patch with id {shown}")
        rows = np.array([row_of[i] for i in ids], dtype=np.int64)
        bad = [f"{cached.ids[r]} ({cached.problems[r]})" for r in rows if not cached.ok[r]]
        if bad:
            raise DataError(f"{cached.name}: cannot explain excluded patches: {', '.join(bad[:5])}")
        return rows
    if n < 1:
        raise MetastasisError(f"--n must be at least 1, got {n}")
    if len(usable) == 0:
        raise DataError(f"{cached.name}: no usable patches to explain")
    rng = np.random.default_rng(seed)
    if not cached.labelled:
        return np.sort(rng.choice(usable, size=min(n, len(usable)), replace=False))
    pools = [usable[cached.labels[usable] == c] for c in (1, 0)]
    want = [min(len(pools[0]), -(-n // 2))]
    want.append(min(len(pools[1]), n - want[0]))
    want[0] = min(len(pools[0]), n - want[1])  # the other class fills what one lacks
    picked = [rng.choice(p, size=k, replace=False) for p, k in zip(pools, want)]
    return np.sort(np.concatenate(picked))


def _file_name(k: int, patch_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", patch_id)[:80].strip("._") or "patch"
    return f"{k:04d}_{safe}.png"


def explain_to_folder(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    ids: Sequence[str] | None = None,
    n: int = 16,
    seed: int = 0,
    alpha: float = 0.4,
    batch_size: int = 256,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    progress: bool = True,
    engine: str = "auto",
    threshold: float | None = None,
) -> pd.DataFrame:
    """Grad-CAM explanations of patches of ``data`` by a checkpoint (or run folder), in ``out``.

    Writes ``grid.png`` (up to ``GRID_MAX`` tiles), one ``patches/NNNN_<id>.png`` per patch and
    ``explanations.csv`` (``id, probability, prediction, truth, centre_share, cam_empty, png``),
    all atomically, and returns that table. Patches: ``ids`` when given, else ``n`` drawn at
    random (``seed``; half of each class in labelled data). Probabilities are the checkpoint's
    (its test-time augmentation and temperature, as ``predict`` gives them), the prediction is at
    its threshold, ``truth`` is the label where the data has one; ``centre_share`` is the share
    of the heat map in the central 32 x 32; ``cam_empty`` is True where the heat map is empty
    (`cam_empty`), and its overlay then says "no activation: nothing to show".
    """
    if not 0.0 <= alpha <= 1.0:
        raise MetastasisError(f"alpha must be in 0..1, got {alpha}")
    predictor = Predictor.from_checkpoint(
        checkpoint, device=device, batch_size=batch_size, engine=engine, threshold=threshold
    )
    assert predictor.bundle is not None
    cached = open_split(
        data, split, EXPLAIN_SPLITS, Path(cache_dir) if cache_dir else None, progress
    )
    rows = _choose_rows(cached, ids, n, seed)
    images = np.asarray(cached.images[rows])
    truths = cached.labels[rows].astype(np.int64) if cached.labelled else None
    patch_ids = [str(i) for i in cached.ids[rows]]
    log.info(
        "explaining %d patches of %s; engine: %s",
        len(rows),
        cached.name,
        predictor.engine.describe(),
    )
    probs = predictor.predict_proba(images)
    heats = gradcam(predictor, images)
    threshold, names = predictor.threshold, predictor.bundle.class_names
    items = explained_patches(images, heats, patch_ids, probs, threshold, truths, names, alpha)
    title = f"Grad-CAM of {Path(str(checkpoint)).name} on {cached.name}"
    pngs = _write_pictures(Path(out), items, title, threshold)
    table = _explanations_table(patch_ids, probs, threshold, truths, heats, pngs)
    write_table(table, Path(out) / "explanations.csv")
    return table


def _explanations_table(
    ids: Sequence[str],
    probs: np.ndarray,
    threshold: float,
    truths: np.ndarray | None,
    heats: np.ndarray,
    pngs: Sequence[str],
) -> pd.DataFrame:
    """``explanations.csv``: ``id, probability, prediction, truth`` (``truth`` always there,
    empty for unlabelled data), then ``centre_share, cam_empty, png``."""
    table = predictions_frame(
        ids,
        probs,
        threshold,
        truths,
        centre_share=centre_share(heats),
        cam_empty=cam_empty(heats),
        png=list(pngs),
    )
    if truths is None:
        table.insert(3, TRUTH, pd.Series(pd.NA, index=table.index, dtype="Int64"))
    return table


def _write_pictures(
    out_dir: Path, items: Sequence[Explained], title: str, threshold: float
) -> list[str]:
    """One ``patches/NNNN_<id>.png`` per item and ``grid.png`` (the first ``GRID_MAX``, under
    ``title``) in ``out_dir``; returns the patches' PNG paths, relative to ``out_dir``."""
    from metastasis.reports.explanations import plot_explanation, plot_explanations
    from metastasis.reports.figures import save_figure

    names = [f"patches/{_file_name(k, item.id)}" for k, item in enumerate(items)]
    for item, name in zip(items, names):
        save_figure(plot_explanation(item), out_dir / name)
    shown = items[:GRID_MAX]
    title = f"{title}: {len(shown)} of {len(items)} patches, threshold {threshold:.3f}"
    save_figure(plot_explanations(shown, ncols=4, title=title), out_dir / "grid.png")
    return names
