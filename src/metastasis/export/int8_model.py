"""A run folder's int8 model as a file: where it lives, what it says of itself, running it.

``export.quantize`` writes ``model.int8.xml`` (OpenVINO IR, its weights in ``model.int8.bin``)
beside ``model.onnx``; this module reads and runs it with OpenVINO and never imports PyTorch,
so that ``inference.light`` can start the int8 engine without it (importing PyTorch costs
about 4 CPU seconds on the 2-core CPU; OpenVINO about 0.5).

The metadata (``RT_KEY`` in the IR's ``rt_info``, JSON text per key) holds
``export.metadata``'s keys, how the model was quantized and calibrated, the parity measured
when it was written (its probabilities against PyTorch float32's, within ``PARITY_LIMIT`` or
not written) and, since the light int8 path, ``CHECKPOINT_KEY``: the SHA-256 of the
``checkpoint.pt`` whose PyTorch model that parity was measured against. A checkpoint with that
SHA-256 is the one the int8 model was verified against; an int8 file without it (written
before) is checked against PyTorch on a probe at start-up instead (``inference.runtime``).

OpenVINO's model cache (``CACHE_DIR``) is not used: measured on the 2-core CPU with the
``fast-cpu`` int8 model it saves about 0.1 s of the 0.2 s compile, against a cache of blobs
written into the user's run folder or home.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from metastasis.errors import MetastasisError, first_line
from metastasis.extras import require

RUN_INT8 = "model.int8.xml"  # beside model.onnx; its weights in model.int8.bin
PARITY_LIMIT = 0.05  # largest |probability difference| from float32 an int8 model may have
RT_KEY = "metastasis"  # rt_info section holding the metadata (JSON text per key)
CHECKPOINT_KEY = "checkpoint_sha256"  # the checkpoint.pt the parity was measured against


def int8_path(onnx_file: str | os.PathLike[str]) -> Path:
    """Where the int8 model of a run folder's ``model.onnx`` lives (beside it)."""
    return Path(onnx_file).with_name(RUN_INT8)


def require_int8(what: str = "the int8 engine") -> Any:
    """The ``openvino`` module, or a one-line `MissingExtra` naming the install."""
    (ov,) = require(what, "openvino")
    return ov


def runtime_name() -> str:
    ov = require_int8()
    return f"OpenVINO {ov.__version__.split('-')[0]}"


def openvino_core(threads: int = 0) -> Any:
    """An OpenVINO core for the CPU: ``threads`` inference threads (0: OpenVINO's default, one
    per physical core), latency first, float32 wherever the model is not int8."""
    ov = require_int8()
    core = ov.Core()
    core.set_property(
        "CPU",
        {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",  # what is not int8 stays float32 (never bf16)
        },
    )
    return core


def read_ir(path: str | os.PathLike[str], core: Any = None) -> Any:
    """The OpenVINO model of an IR file, or a one-line `MetastasisError`."""
    try:
        return (core or openvino_core()).read_model(os.fspath(path))
    except Exception as err:  # OpenVINO raises RuntimeError subclasses of its own
        raise MetastasisError(
            f"{path}: not a readable OpenVINO model ({first_line(err)})"
        ) from None


def compiled_runner(model: Any, threads: int = 0) -> Any:
    """``float NCHW array -> logits (N)`` of an OpenVINO model (or IR path) on the CPU."""
    core = openvino_core(threads)
    if isinstance(model, (str, os.PathLike)):
        model = read_ir(model, core)
    request = core.compile_model(model, "CPU").create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        out = request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.array(out[0], dtype=np.float32).reshape(-1)

    return run


def model_metadata(model: Any) -> dict[str, Any]:
    """The metadata an int8 model was written with (``export.quantize``), values decoded."""
    if not model.has_rt_info([RT_KEY]):
        return {}
    out: dict[str, Any] = {}
    for key in model.get_rt_info()[RT_KEY]:
        text = model.get_rt_info([RT_KEY, key]).astype(str)
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return out


def read_int8_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of an int8 model file (``model_metadata``)."""
    return model_metadata(read_ir(path))


def unverified(meta: dict[str, Any], checkpoint: str | os.PathLike[str]) -> str | None:
    """Why the parity in ``meta`` was not measured against ``checkpoint`` (None: it was)."""
    from metastasis.io import sha256_file

    written = meta.get(CHECKPOINT_KEY)
    if not isinstance(written, str):
        return f"its metadata has no {CHECKPOINT_KEY} (written before it was recorded)"
    parity = meta.get("parity")
    if not isinstance(parity, dict) or not isinstance(
        parity.get("max_abs_probability_difference"), float
    ):
        return "its metadata has no parity"
    if not parity["max_abs_probability_difference"] <= PARITY_LIMIT:
        return f"its parity is over {PARITY_LIMIT:g}"
    if written != sha256_file(checkpoint):
        return f"it was verified against another {Path(checkpoint).name} (SHA-256 {written:.12})"
    return None


def notes(meta: dict[str, Any]) -> tuple[str, ...]:
    """How the int8 model was made and checked when written, for an engine's description."""
    out = []
    if "calibration" in meta:
        out.append(f"calibrated on {meta['calibration']}")
    parity = meta.get("parity") or {}
    if "max_abs_probability_difference" in parity:
        out.append(
            f"max |probability difference| from float32 "
            f"{parity['max_abs_probability_difference']:.1e} (99th percentile "
            f"{parity.get('p99_abs_probability_difference', float('nan')):.1e}) on "
            f"{parity.get('patches', 'the parity patches')} when written"
        )
    return tuple(out)
