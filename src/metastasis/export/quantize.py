"""int8 models: post-training static quantization of a checkpoint's model, for the int8 engine.

OpenVINO (``pip install 'metastasis[int8]'``) runs them: measured on the 2-core AMD EPYC
(Zen 3, AVX2 without VNNI), OpenVINO with NNCF's quantization was the fastest int8 runtime,
where ONNX Runtime's static quantization (QDQ and QOperator, u8 or s8 activations) ran slower
than its own float32 (``benchmarks/int8.py``; numbers in ``benchmarks/README.md``).

NNCF quantizes the float32 ONNX graph (``export.onnx``) read by OpenVINO: weights per channel
(symmetric int8), activations per tensor with ranges calibrated on ``N_CALIBRATION`` training
patches spread evenly over the split. The result is written as OpenVINO IR beside the run
folder's ``model.onnx`` (``model.int8.xml`` and its weights ``model.int8.bin``), with
``export.metadata``'s keys plus where the calibration patches came from, the measured parity
(largest and 99th-percentile |probability difference| from float32 on the parity patches) and
the SHA-256 of the checkpoint file it was measured against in its ``rt_info``. A model whose
probabilities move more than ``PARITY_LIMIT`` is not written. Reading and running the file,
without PyTorch, is ``export.int8_model``'s.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metastasis.checkpoint import Bundle
from metastasis.errors import MetastasisError, first_line
from metastasis.export.int8_model import (  # noqa: F401 (read and run there, without PyTorch)
    CHECKPOINT_KEY,
    PARITY_LIMIT,
    RT_KEY,
    RUN_INT8,
    compiled_runner,
    int8_path,
    read_int8_metadata,
    require_int8,
    runtime_name,
)
from metastasis.export.metadata import export_metadata
from metastasis.export.onnx import RUN_ONNX, onnx_bytes
from metastasis.extras import require
from metastasis.io import sha256_file
from metastasis.transforms.presets import Preprocessing

log = logging.getLogger(__name__)

N_CALIBRATION = 300  # training patches the activation ranges are calibrated on
CALIBRATION_BATCH = 32


@dataclass(frozen=True)
class Int8Parity:
    """How far the int8 model's outputs are from float32's on ``n`` patches."""

    max_abs_dp: float  # largest |probability difference|
    p99_abs_dp: float  # its 99th percentile
    max_abs_dlogit: float
    n: int
    patches: str  # where they came from

    def text(self) -> str:
        return (
            f"max |probability difference| from float32 {self.max_abs_dp:.1e} "
            f"(99th percentile {self.p99_abs_dp:.1e}) on {self.patches}"
        )


@dataclass(frozen=True)
class QuantizeResult:
    path: Path
    calibration: str  # where the calibration patches came from
    parity: Int8Parity
    runtime: str


def quantize_onnx(graph: bytes, calibration: np.ndarray) -> Any:
    """The OpenVINO int8 model of an ONNX graph, activations calibrated on ``calibration``
    (preprocessed float patches, N x 3 x S x S)."""
    ov = require_int8()
    (nncf,) = require("int8 quantization", "nncf")
    with tempfile.TemporaryDirectory(prefix="metastasis-int8-") as tmp:
        source = Path(tmp) / RUN_ONNX
        source.write_bytes(graph)
        model = ov.Core().read_model(str(source))
    batches = [
        np.ascontiguousarray(calibration[i : i + CALIBRATION_BATCH])
        for i in range(0, len(calibration), CALIBRATION_BATCH)
    ]
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.ERROR)  # its progress bars and notices
    try:
        return nncf.quantize(
            model,
            nncf.Dataset(batches),
            preset=nncf.QuantizationPreset.PERFORMANCE,
            subset_size=len(batches),
        )
    finally:
        nncf_log.setLevel(level)


def parity(
    int8_logits: np.ndarray, fp32_logits: np.ndarray, temperature: float, patches: str
) -> Int8Parity:
    """The int8 model's distance from float32 (probabilities after ``temperature``)."""
    p8 = 1 / (1 + np.exp(-int8_logits.astype(np.float64) / temperature))
    p32 = 1 / (1 + np.exp(-fp32_logits.astype(np.float64) / temperature))
    dp = np.abs(p8 - p32)
    return Int8Parity(
        float(dp.max()),
        float(np.quantile(dp, 0.99)),
        float(np.abs(int8_logits - fp32_logits).max()),
        len(dp),
        patches,
    )


def _floats(preprocessing: Preprocessing, images: np.ndarray) -> np.ndarray:
    x = preprocessing(torch.from_numpy(np.ascontiguousarray(images)))
    return np.ascontiguousarray(x.numpy(), dtype=np.float32)


def _batched_logits(run: Any, x: np.ndarray, size: int = 256) -> np.ndarray:
    return np.concatenate([run(x[i : i + size]) for i in range(0, len(x), size)])


def quantize_bundle(
    bundle: Bundle,
    out: str | os.PathLike[str],
    calibration: np.ndarray,
    calibration_from: str,
    parity_images: np.ndarray | None = None,
    parity_from: str | None = None,
    checkpoint_sha256: str | None = None,
) -> QuantizeResult:
    """Quantize ``bundle``'s model, calibrated on ``calibration`` (uint8 patches, N x 96 x 96
    x 3, from ``calibration_from``), check it on ``parity_images`` (default: the calibration
    patches) and write it to ``out`` (OpenVINO IR: ``.xml`` and ``.bin``) with its metadata.
    ``checkpoint_sha256``: the SHA-256 of the checkpoint file ``bundle`` was read from, hashed
    before it was read; recorded (``CHECKPOINT_KEY``) so that ``inference.light`` may run the
    int8 model of that checkpoint without checking it against PyTorch again."""
    if len(calibration) == 0:
        raise MetastasisError("int8 quantization needs calibration patches, got none")
    out = Path(out)
    if out.suffix != ".xml":
        raise MetastasisError(f"{out}: an int8 model is written as OpenVINO IR: name a .xml file")
    model = bundle.build_model().float().cpu()
    pre = bundle.preprocessing
    try:
        graph = onnx_bytes(model, pre.input_size)
        quantized = quantize_onnx(graph, _floats(pre, calibration))
    except MetastasisError:
        raise
    except Exception as err:  # the exporter, OpenVINO and NNCF raise many kinds of error
        raise MetastasisError(
            f"{bundle.arch} cannot be quantized to int8: {first_line(err, with_type=True)}"
        ) from None
    if parity_images is None:
        parity_images, parity_from = calibration, calibration_from
    x = _floats(pre, parity_images)
    with torch.inference_mode():
        reference = model(torch.from_numpy(x)).float().reshape(-1).numpy()
    got = _batched_logits(compiled_runner(quantized, torch.get_num_threads()), x)
    check = parity(got, reference, bundle.temperature, parity_from or "the parity patches")
    if not check.max_abs_dp <= PARITY_LIMIT:
        raise MetastasisError(
            f"{out}: not written: the int8 model's {check.text()} is over {PARITY_LIMIT:g}"
        )
    meta = {
        **export_metadata(bundle),
        "precision": "int8",
        "runtime": runtime_name(),
        "quantization": "post-training static (NNCF, performance preset): weights int8 per "
        "channel, activations int8 per tensor",
        "calibration": calibration_from,
        "parity": {
            "max_abs_probability_difference": check.max_abs_dp,
            "p99_abs_probability_difference": check.p99_abs_dp,
            "max_abs_logit_difference": check.max_abs_dlogit,
            "patches": check.patches,
        },
    }
    if checkpoint_sha256 is not None:
        meta[CHECKPOINT_KEY] = checkpoint_sha256
    _save(quantized, out, meta)
    return QuantizeResult(out, calibration_from, check, runtime_name())


def _save(model: Any, out: Path, meta: Mapping[str, Any]) -> None:
    """OpenVINO IR (``out`` and its ``.bin``), written beside ``out`` and renamed into place."""
    ov = require_int8()
    for key, value in meta.items():
        model.set_rt_info(json.dumps(value), [RT_KEY, key])
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=out.parent) as tmp:
        staged = Path(tmp) / out.name
        ov.save_model(model, str(staged), compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), out.with_suffix(".bin"))
        os.replace(staged, out)


def calibration_patches(
    data: str | Path,
    split: str | None = None,
    n: int = N_CALIBRATION,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, str]:
    """(uint8 patches, where from): ``n`` usable patches of ``data`` spread evenly over it
    (training patches preferred where ``data`` has splits)."""
    from metastasis.data.cache import open_split

    cached = open_split(data, split, ("train",), Path(cache_dir) if cache_dir else None, progress)
    usable = cached.usable_indices()
    if len(usable) == 0:
        raise MetastasisError(f"{cached.name}: no usable patches to calibrate int8 on")
    rows = _spread(usable, n)
    return np.asarray(cached.images[rows]), f"{len(rows)} patches of {cached.name}"


def _spread(rows: np.ndarray, n: int) -> np.ndarray:
    picks = np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int)
    return np.unique(rows[picks])


def write_run_int8(run_dir: str | os.PathLike[str], train_images: Any, train_rows: np.ndarray,
                   train_name: str, probe: np.ndarray) -> QuantizeResult | None:  # fmt: skip
    """End of training: ``model.int8.xml`` in the run folder, calibrated on ``N_CALIBRATION``
    of the training rows (``train_images[train_rows]``), checked on ``probe`` (validation
    patches). Skipped, with a logged line, without OpenVINO and NNCF or with fewer training
    patches than ``N_CALIBRATION``; a model that cannot be quantized loses only its int8 file."""
    from metastasis.checkpoint import FILENAME, load_checkpoint

    run = Path(run_dir)
    if len(train_rows) < N_CALIBRATION:
        log.info("no int8 model: calibration needs %d training patches", N_CALIBRATION)
        return None
    try:
        require("int8 quantization", "openvino", "nncf")
    except MetastasisError as err:
        log.info("no int8 model (%s)", err)
        return None
    rows = _spread(np.sort(train_rows), N_CALIBRATION)
    images = np.asarray(train_images[rows])
    try:
        digest = sha256_file(run / FILENAME)  # before it is read (see quantize_bundle)
        result = quantize_bundle(
            load_checkpoint(run / FILENAME), run / RUN_INT8, images,
            f"{len(rows)} training patches of {train_name}", probe,
            f"{len(probe)} validation patches", digest,
        )  # fmt: skip
    except Exception as err:  # quantization raises many kinds of error
        log.warning("no %s in the run folder (%s)", RUN_INT8, first_line(err, with_type=True))
        return None
    log.info("wrote %s (%s)", result.path, result.parity.text())
    return result


def card_line(result: QuantizeResult) -> str:
    """The model card's line for an int8 model."""
    return (
        f"`{result.path.name}` (weights in `{result.path.with_suffix('.bin').name}`): int8 "
        f"model for `--engine int8` ({result.runtime}), post-training static quantization "
        f"calibrated on {result.calibration}; {result.parity.text()}"
    )


def quantize_checkpoint(
    checkpoint: str | Path,
    calibration: str | Path,
    out: str | Path | None = None,
    *,
    calibration_split: str | None = None,
    n_calibration: int = N_CALIBRATION,
    data: str | Path | None = None,
    split: str | None = None,
    n_probe: int = 64,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    model_card: bool = True,
) -> QuantizeResult:
    """``metastasis export --format int8``: the checkpoint's int8 model, calibrated on
    ``n_calibration`` patches of ``calibration`` (training patches), checked on ``n_probe``
    patches of ``data`` (default: the calibration patches), written to ``out`` (default: the
    run folder's ``model.int8.xml``, where the int8 engine looks) with a model card beside it."""
    from metastasis.checkpoint import FILENAME, checkpoint_path, load_checkpoint
    from metastasis.export.bundle import probe_patches
    from metastasis.export.model_card import FILENAME as CARD
    from metastasis.export.model_card import read_run_info, write_model_card

    if n_calibration < 1:
        raise MetastasisError(f"--n-calibration must be at least 1, got {n_calibration}")
    require("int8 quantization", "openvino", "nncf")
    ckpt = checkpoint_path(checkpoint)
    digest = sha256_file(ckpt)  # before it is read (see quantize_bundle)
    bundle = load_checkpoint(checkpoint)
    target = Path(out) if out is not None else ckpt.parent / RUN_INT8
    images, source = calibration_patches(
        calibration, calibration_split, n_calibration, cache_dir, progress
    )
    checks, checks_from = (None, None)
    if data is not None:
        checks, checks_from = probe_patches(data, split, n_probe, cache_dir, progress)
    result = quantize_bundle(bundle, target, images, source, checks, checks_from, digest)
    if model_card:
        in_run = ckpt.name == FILENAME and target.parent == ckpt.parent
        metrics, data_info = read_run_info(ckpt.parent) if in_run else ({}, {})
        files = [f"`{FILENAME}`: the checkpoint (weights, preprocessing, threshold, config)"]
        if in_run and (ckpt.parent / RUN_ONNX).is_file():
            files.append(f"`{RUN_ONNX}`: ONNX graph with metadata")
        files = [*files, card_line(result)] if in_run else [card_line(result)]
        write_model_card(target.parent / CARD, bundle, metrics, data_info, files)
    return result
