"""Exporting a checkpoint: ONNX or TorchScript with metadata, checked, with a model card.

``export_checkpoint`` (``metastasis export``) writes the file only after its outputs on real
patches (or synthetic ones) match eager PyTorch's within ``TOLERANCE``; the model card goes
beside it. ``write_run_exports`` is what training calls at the end of a run: ``model.onnx``
(which the ONNX Runtime engine then loads instead of exporting) and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from metastasis.checkpoint import FILENAME, Bundle, checkpoint_path, load_checkpoint
from metastasis.errors import MetastasisError, first_line
from metastasis.export.metadata import INPUT_NAME, export_metadata
from metastasis.export.model_card import FILENAME as CARD
from metastasis.export.model_card import read_run_info, write_model_card
from metastasis.export.onnx import RUN_ONNX, onnx_bytes, onnx_session
from metastasis.export.torchscript import load_torchscript, torchscript_bytes
from metastasis.io import atomic_write_bytes

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4  # largest |logit difference| from eager PyTorch an export may have
N_PROBE = 64  # patches the parity check runs


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float  # largest |logit difference| from eager PyTorch on the probe
    n_probe: int
    probe: str  # where the probe patches came from
    model_card: Path | None


def probe_patches(
    data: str | Path | None = None,
    split: str | None = None,
    n: int = N_PROBE,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, str]:
    """(uint8 N x 96 x 96 x 3 patches, where from): ``n`` usable patches of ``data`` spread
    evenly over it, or synthetic patches (``metastasis.data.synthetic``) without data."""
    if data is None:
        from metastasis.data.synthetic import make_patches

        images, _ = make_patches(n, seed=0)
        return images, f"{n} synthetic patches"
    from metastasis.data.cache import open_split

    cached = open_split(data, split, (), Path(cache_dir) if cache_dir else None, progress)
    usable = cached.usable_indices()
    if len(usable) == 0:
        raise MetastasisError(f"{cached.name}: no usable patches to check the export on")
    spread = np.linspace(0, len(usable) - 1, min(n, len(usable))).round().astype(int)
    rows = np.unique(usable[spread])
    return np.asarray(cached.images[rows]), f"{len(rows)} patches of {cached.name}"


def _logits(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).float().reshape(-1).numpy()


def _exported(bundle: Bundle, fmt: str, x: torch.Tensor) -> tuple[bytes, float]:
    """(file bytes, max |logit difference| from eager PyTorch on ``x``)."""
    model = bundle.build_model().float().cpu()
    reference = _logits(model, x)
    meta = export_metadata(bundle)
    if fmt == "onnx":
        data = onnx_bytes(model, bundle.preprocessing.input_size, meta)
        session = onnx_session(data)
        got = session.run(None, {INPUT_NAME: np.ascontiguousarray(x.numpy())})[0].reshape(-1)
    elif fmt == "torchscript":
        data = torchscript_bytes(model, x[:2], meta)
        module, _ = load_torchscript(data)
        got = _logits(module, x)
    else:
        raise MetastasisError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    return data, float(np.abs(got - reference).max())


def export_bundle(bundle: Bundle, out: str | Path, fmt: str, images: np.ndarray) -> float:
    """Write ``bundle``'s model to ``out`` as ``fmt`` if it matches eager PyTorch on
    ``images`` (uint8 patches) within ``TOLERANCE``; return the largest difference."""
    if fmt not in FORMATS:
        raise MetastasisError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    if Path(out).is_dir():
        raise MetastasisError(f"{out}: is a folder; give the file to write")
    x = bundle.preprocessing(torch.from_numpy(np.ascontiguousarray(images))).contiguous()
    data, diff = _exported(bundle, fmt, x)
    if not diff <= TOLERANCE:
        raise MetastasisError(
            f"{out}: not written: the {fmt} model's logits differ from PyTorch's by {diff:.2e} "
            f"(> {TOLERANCE:g}) on {len(x)} patches"
        )
    try:
        atomic_write_bytes(out, data)
    except OSError as exc:
        raise MetastasisError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return diff


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    fmt: str = "onnx",
    *,
    data: str | Path | None = None,
    split: str | None = None,
    n_probe: int = N_PROBE,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    model_card: bool = True,
) -> ExportResult:
    """Export a checkpoint (or run folder) to ``out`` (``fmt``: onnx or torchscript) with its
    metadata, after a parity check on ``n_probe`` patches of ``data`` (synthetic without it);
    ``MODEL_CARD.md`` beside it (from the run folder's metrics when there is one)."""
    if fmt not in FORMATS:
        raise MetastasisError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    if n_probe < 1:
        raise MetastasisError(f"the parity check needs at least 1 patch, got {n_probe}")
    bundle = load_checkpoint(checkpoint)
    images, probe = probe_patches(data, split, n_probe, cache_dir, progress)
    out_path = Path(out)
    diff = export_bundle(bundle, out_path, fmt, images)
    card = None
    if model_card:
        ckpt = checkpoint_path(checkpoint)
        metrics, data_info = read_run_info(ckpt.parent) if ckpt.name == FILENAME else ({}, {})
        card = write_model_card(
            out_path.parent / CARD,
            bundle,
            metrics,
            data_info,
            files=[f"`{out_path.name}`: {fmt} export of `{ckpt}`"],
        )
    return ExportResult(out_path, fmt, diff, len(images), probe, card)


def write_run_exports(
    run_dir: str | Path, probe: np.ndarray, more_files: tuple[str, ...] = ()
) -> None:
    """End of training: ``model.onnx`` (checked on ``probe``, uint8 patches) and
    ``MODEL_CARD.md`` in the run folder (listing ``more_files`` too: the int8 model's line).
    A model ONNX cannot export loses only its ``model.onnx`` (a warning; the engine falls
    back as before), never the run."""
    run = Path(run_dir)
    bundle = load_checkpoint(run / FILENAME)
    files = [f"`{FILENAME}`: the checkpoint (weights, preprocessing, threshold, config)"]
    try:
        diff = export_bundle(bundle, run / RUN_ONNX, "onnx", probe)
        files.append(f"`{RUN_ONNX}`: ONNX graph with metadata (max |logit difference| {diff:.1e})")
        log.info("wrote %s (max |logit difference| from PyTorch %.1e)", run / RUN_ONNX, diff)
    except Exception as err:  # the exporter raises many kinds of error
        log.warning("no %s in the run folder (%s)", RUN_ONNX, first_line(err, with_type=True))
    files.extend(more_files)
    metrics, data_info = read_run_info(run)
    write_model_card(run / CARD, bundle, metrics, data_info, files)
