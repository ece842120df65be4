"""Inference engines: the fastest exact way to run a model where it is.

``auto`` (the default of ``metastasis predict`` and ``evaluate``) picks ONNX Runtime on a CPU and
PyTorch on CUDA or MPS. Every engine takes the preprocessed float batch (N x 3 x H x W) and
returns float32 logits; which engine ran, and at what precision, is part of the outputs.

* ``onnxruntime``: the model is exported to ONNX in memory (``export.onnx``), or read from the
  run folder's ``model.onnx`` where training wrote one, and run by ONNX Runtime's CPU provider,
  whose graph optimisations (blocked NCHWc layouts, fused Conv+ReLU) make it the fastest
  float32 path on a CPU: measured on the 2-core CPU, 2 threads, batch 256, the seed's CNN ran
  at 1,204 patches/s against 533 for PyTorch (channels-last) and 677 for ``torch.compile``
  with freezing. Before it is used, its logits on a probe batch are checked
  against PyTorch's: more than ``TOLERANCE`` apart and it is refused (a ``model.onnx`` that
  does not match its checkpoint is exported again; ``auto`` falls back to PyTorch, saying why).
* ``int8``: the run folder's int8 model (``model.int8.xml`` beside ``model.onnx``, written at
  training time or by ``metastasis export --format int8``; ``export.quantize``), run by
  OpenVINO (the ``int8`` extra): post-training static quantization, not exact, so never chosen
  by ``auto``. Its probabilities on the probe are checked against PyTorch float32's: more than
  ``export.int8_model.PARITY_LIMIT`` apart and it is refused; the difference measured there, and
  the one on real patches when it was written, are what ``describe`` says. No int8 model, or
  no OpenVINO, is a one-line refusal. Where the file records the SHA-256 of the checkpoint it
  was checked against when written, and it is this one, ``inference.light`` runs it instead,
  without PyTorch and without the probe (predict on image files, slides tile by tile).
* ``torch``: PyTorch eager, float32, channels-last memory.
* ``torch-bf16``: PyTorch under bfloat16 autocast: faster on CPUs with AVX512-BF16/AMX and on
  GPUs, not exact (logits differ by about 1e-2), so never chosen by ``auto``.

On a CPU both PyTorch engines run a batch ``CPU_CHUNK`` patches at a time, whatever batch they
are given: oneDNN's activations then stay in the caches. Measured on the 2-core CPU (2 threads,
patches/s at 32 against 256 at a time): the seed's CNN 1,042 against 634 in float32 and
1,862 against 960 in bfloat16; regularised-cnn 832 / 556 and 1,958 / 930; efficientnet_b0
546 / 247 and 664 / 396; resnet18 316 / 278 and 501 / 477. ONNX Runtime gains nothing from
it (1,075 against 1,205 for the seed's CNN), so it gets whole batches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metastasis.errors import MetastasisError, first_line
from metastasis.export.onnx import onnx_bytes, onnx_session
from metastasis.inference.options import ENGINES  # declared once, with the options
from metastasis.transforms.presets import Preprocessing

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # largest |logit difference| from PyTorch float32 an exact engine may have
CPU_CHUNK = 32  # patches per forward pass of the PyTorch engines on a CPU (see the notes)


@dataclass
class Engine:
    """A callable ``float NCHW batch -> float32 logits``, with what it is."""

    name: str
    precision: str
    run: Any = field(repr=False)
    checked_diff: float | None = None  # max |logit diff| from PyTorch float32 on the probe
    source: str | None = None  # the model file it runs, when read from one
    runtime: str | None = None  # what runs it, where the name does not say (int8: OpenVINO)
    notes: tuple[str, ...] = ()  # how it was made and checked (int8: calibration, parity)
    checked_dp: float | None = None  # max |probability diff| from float32 on the probe

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)

    def describe(self) -> str:
        text = f"{self.name} ({self.precision}" + (f", {self.runtime})" if self.runtime else ")")
        if self.source is not None:
            text += f" from {self.source}"
        if self.checked_diff is not None:
            text += f", max |logit difference| from PyTorch {self.checked_diff:.1e} on a probe"
        if self.checked_dp is not None:
            text += f" (probability {self.checked_dp:.1e})"
        return "; ".join([text, *self.notes])

    def to_dict(self) -> dict[str, Any]:
        """What ran, for the outputs (metrics.json, /v1/model, a slide's summary)."""
        return {
            "name": self.name,
            "precision": self.precision,
            "runtime": self.runtime,
            "source": self.source,
            "max_abs_logit_difference_on_probe": self.checked_diff,
            "max_abs_probability_difference_on_probe": self.checked_dp,
            "notes": list(self.notes),
            "text": self.describe(),
        }


def _torch_engine(model: nn.Module, device: torch.device, bf16: bool) -> Engine:
    model = model.eval().to(device).to(memory_format=torch.channels_last)
    chunk = CPU_CHUNK if device.type == "cpu" else None

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            if chunk is None or len(x) <= chunk:
                return model(x).float()
            return torch.cat([model(part).float() for part in x.split(chunk)])

    return Engine("torch-bf16" if bf16 else "torch", "bfloat16" if bf16 else "float32", run)


def _probe(preprocessing: Preprocessing) -> torch.Tensor:
    """4 random uint8 patches, preprocessed: the batch an engine is checked on (CPU)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 96, 96, 3), dtype=torch.uint8, generator=g)
    return preprocessing(images)


def _onnxruntime_engine(
    model: nn.Module, preprocessing: Preprocessing, reference: Engine, onnx_file: Path | None
) -> Engine:
    probe = _probe(preprocessing)
    if onnx_file is not None and onnx_file.is_file():
        try:
            return _checked(onnx_session(onnx_file), probe, reference, str(onnx_file))
        except Exception as err:  # unreadable, other shapes, other weights
            reason = first_line(err, with_type=True)
            log.warning("%s not used (%s); exporting the checkpoint again", onnx_file, reason)
    graph = onnx_bytes(model.cpu().float(), preprocessing.input_size)
    return _checked(onnx_session(graph), probe, reference, None)


def _checked(session: Any, probe: torch.Tensor, reference: Engine, source: str | None) -> Engine:
    """The session as an engine, if its logits on ``probe`` are within ``TOLERANCE``."""

    def run(x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().float().numpy())
        return torch.from_numpy(session.run(None, {"image": arr})[0].reshape(-1))

    engine = Engine("onnxruntime", "float32", run, source=source)
    diff = float((engine(probe) - reference(probe)).abs().max())
    if not diff <= TOLERANCE:
        raise MetastasisError(
            f"ONNX Runtime's logits differ from PyTorch's by {diff:.2e} (> {TOLERANCE:g})"
        )
    engine.checked_diff = diff
    return engine


def _int8_engine(
    model: nn.Module, preprocessing: Preprocessing, reference: Engine, onnx_file: Path | None
) -> Engine:
    """The run folder's int8 model, checked against ``reference`` on the probe."""
    from metastasis.export import int8_model

    if onnx_file is None:
        raise MetastasisError(
            "no int8 model: the int8 engine runs a run folder's model.int8.xml (give the run "
            "folder, or write one: metastasis export --format int8 --calibration DATA)"
        )
    path = int8_model.int8_path(onnx_file)
    if not path.is_file():
        raise MetastasisError(
            f"{path}: no int8 model; write it with: metastasis export --checkpoint "
            f"{path.parent} --format int8 --calibration TRAINING_PATCHES"
        )
    int8_model.require_int8()
    ir = int8_model.read_ir(path)
    meta = int8_model.model_metadata(ir)
    run = int8_model.compiled_runner(ir, torch.get_num_threads())

    def engine_run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(run(x.detach().cpu().float().numpy()))

    probe = _probe(preprocessing)
    got, want = engine_run(probe), reference(probe)
    dp = float((torch.sigmoid(got) - torch.sigmoid(want)).abs().max())
    if not dp <= int8_model.PARITY_LIMIT:
        raise MetastasisError(
            f"{path}: the int8 model's probabilities differ from PyTorch's by {dp:.2e} on a "
            f"probe (> {int8_model.PARITY_LIMIT:g}): not this checkpoint's? write it again"
        )
    engine = Engine("int8", "int8", engine_run, source=str(path), runtime=int8_model.runtime_name())
    engine.checked_diff = float((got - want).abs().max())
    engine.checked_dp = dp
    engine.notes = int8_model.notes(meta)
    return engine


def make_engine(
    model: nn.Module,
    preprocessing: Preprocessing,
    device: torch.device,
    engine: str = "auto",
    onnx_file: str | Path | None = None,
) -> Engine:
    """The engine to predict with (see the module notes); ``auto`` never loses exactness.
    ``onnx_file``: the model already exported (a run folder's ``model.onnx``), used by the
    ONNX Runtime engine when it matches ``model`` on the probe; the int8 engine runs the
    ``model.int8.xml`` beside it."""
    if engine not in ENGINES:
        raise MetastasisError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    if engine == "torch-bf16":
        return _torch_engine(model, device, bf16=True)
    reference = _torch_engine(model, device, bf16=False)
    if engine == "int8":
        if device.type != "cpu":
            raise MetastasisError(f"the int8 engine runs on the CPU, not on {device.type}")
        path = Path(onnx_file) if onnx_file is not None else None
        return _int8_engine(model, preprocessing, reference, path)
    if engine == "torch" or (engine == "auto" and device.type != "cpu"):
        return reference
    if device.type != "cpu":
        raise MetastasisError(f"the onnxruntime engine runs on the CPU, not on {device.type}")
    try:
        path = Path(onnx_file) if onnx_file is not None else None
        return _onnxruntime_engine(model, preprocessing, reference, path)
    except Exception as err:  # the exporter and runtime raise many kinds of error
        reason = first_line(err, with_type=True)
        if engine == "onnxruntime":
            raise MetastasisError(f"onnxruntime cannot run this model: {reason}") from err
        log.warning("ONNX Runtime not used (%s); predicting with PyTorch", reason)
        return reference
