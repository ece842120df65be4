"""Predictions from a run folder's ``model.onnx`` (or, for the int8 engine, its
``model.int8.xml``) without importing PyTorch: fast start-up.

Importing PyTorch costs about 4 CPU seconds on the 2-core CPU, more than predicting a handful
of images takes; a user running ``metastasis predict`` on one image (or a SLURM array of
thousands of small jobs) pays it every time. ``LightPredictor.from_run`` runs the run folder's
``model.onnx`` with ONNX Runtime straight away, reading the checkpoint's threshold, temperature,
test-time augmentation and preprocessing with ``checkpoint.read_checkpoint_meta`` (no PyTorch,
no weights read). It gives the same numbers as ``Predictor``'s ``onnxruntime`` engine: the
preprocessing below is the same float32 arithmetic as ``transforms.presets.Preprocessing``.
With ``engine="int8"`` it runs ``model.int8.xml`` with OpenVINO (``export.int8_model``, about
0.5 s to import) the same way, with the numbers of ``Predictor``'s ``int8`` engine.

Exactness: the ``onnxruntime`` engine of ``Predictor`` checks ``model.onnx`` against PyTorch on a
probe before using it, which needs PyTorch. Here that check is not run again; the parity check
that training ran when it wrote ``model.onnx`` (``export.bundle.write_run_exports``: its logits
within 1e-4 of PyTorch's on real patches, or not written) stands for it, and it is used only
when it is known to belong to this checkpoint: ``model.onnx`` is not older than
``checkpoint.pt`` (a checkpoint rewritten after the export, e.g. recalibrated, is newer), and
the graph's metadata (architecture and its arguments, preprocessing, threshold, temperature,
test-time augmentation, class names) equals the checkpoint's. The int8 engine likewise checks
its model against PyTorch on a probe; here the parity ``export.quantize`` measured against
PyTorch when it wrote the file (within ``PARITY_LIMIT``, or not written) stands for it, under
the same two conditions plus a stricter one: the SHA-256 of the ``checkpoint.pt`` it was
measured against, recorded in its metadata, is this ``checkpoint.pt``'s (an int8 file written
before that was recorded is checked on the probe, as before). Otherwise, or for another engine
or device, or where a GPU may be present (``device="auto"`` would choose it), ``from_run``
returns None with its reason (logged at debug level) and the caller uses ``Predictor``. The
engine's description says which check stands behind it.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metastasis.checkpoint import FILENAME, CheckpointMeta, checkpoint_path, read_checkpoint_meta
from metastasis.errors import MetastasisError, first_line
from metastasis.export.int8_model import RUN_INT8

log = logging.getLogger(__name__)

RUN_ONNX = "model.onnx"  # as export.onnx.RUN_ONNX (that module imports PyTorch)
INPUT_NAME, OUTPUT_NAME = "image", "logit"  # as export.metadata
GPU_NODES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd", "/proc/driver/nvidia/version")
_SAME = ("arch", "arch_kwargs", "input_size", "mean", "std", "mpp", "threshold", "temperature",
         "tta", "class_names")  # fmt: skip


def gpu_may_be_present() -> bool:
    """Whether ``device="auto"`` could choose a GPU here: an NVIDIA or ROCm device node, or
    Apple silicon (MPS). Without one, PyTorch would choose the CPU."""
    if any(os.path.exists(node) for node in GPU_NODES):
        return True
    return sys.platform == "darwin" and platform.machine() == "arm64"


def onnx_threads() -> int:
    """The threads PyTorch would give ONNX Runtime (or OpenVINO): ``$OMP_NUM_THREADS``, else 0
    (the runtime's own default: one per physical core, as PyTorch's)."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


def _expected(meta: CheckpointMeta) -> dict[str, Any]:
    pre = meta.preprocessing
    values = {
        "arch": meta.arch, "arch_kwargs": meta.arch_kwargs, "input_size": pre["input_size"],
        "mean": list(pre["mean"]), "std": list(pre["std"]), "mpp": pre["mpp"],
        "threshold": meta.threshold, "temperature": meta.temperature, "tta": meta.tta,
        "class_names": list(meta.class_names),
    }  # fmt: skip
    return json.loads(json.dumps(values))  # as the ONNX metadata holds them (JSON)


def _mismatch(meta: CheckpointMeta, stored: dict[str, Any]) -> str | None:
    """The first metadata key where the model file (values decoded) and the checkpoint
    differ, if any."""
    for key, value in _expected(meta).items():
        if key not in stored:
            return f"its metadata has no {key}"
        if stored[key] != value:
            return f"its {key} ({stored[key]!r:.40}) is not the checkpoint's ({value!r:.40})"
    return None


def _usable_files(checkpoint: Any, engine: str, device: str) -> tuple[Path, Path] | str:
    """(checkpoint.pt, the model file the engine runs) when the light path may be taken,
    else why not."""
    if engine not in LIGHT_ENGINES:
        return f"engine {engine}"
    if device not in ("auto", "cpu"):
        return f"device {device}"
    if device == "auto" and gpu_may_be_present():
        return "a GPU may be present (device auto)"
    if not isinstance(checkpoint, (str, Path)):
        return "not a checkpoint file"
    ckpt = checkpoint_path(checkpoint)
    model_file = ckpt.parent / LIGHT_ENGINES[engine][0]
    if ckpt.name != FILENAME or not model_file.is_file() or not ckpt.is_file():
        return f"no {model_file.name} beside the checkpoint"
    if model_file.stat().st_mtime < ckpt.stat().st_mtime:
        return f"{model_file.name} is older than {FILENAME}"
    return ckpt, model_file


@dataclass(frozen=True)
class _Model:
    """A model file made ready: ``run`` (float32 NCHW -> logits), its metadata (decoded),
    what it is and which check stands behind it."""

    run: Callable[[np.ndarray], np.ndarray]
    stored: dict[str, Any]
    text: str


def _onnx_model(onnx_file: Path, ckpt: Path) -> _Model:
    from metastasis.export.metadata import decode

    session = _session(onnx_file)

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {INPUT_NAME: x})[0])

    text = (
        f"onnxruntime (float32) from {onnx_file}, checked against PyTorch when training "
        "exported it (not checked again: started without PyTorch)"
    )
    return _Model(run, decode(dict(session.get_modelmeta().custom_metadata_map)), text)


def _int8_model(xml: Path, ckpt: Path) -> _Model:
    """The int8 model (OpenVINO), only where its metadata says its parity was measured
    against this very ``checkpoint.pt`` (its SHA-256) when it was written."""
    from metastasis.export import int8_model

    ir = int8_model.read_ir(xml)
    stored = int8_model.model_metadata(ir)
    why = int8_model.unverified(stored, ckpt)
    if why is not None:
        raise MetastasisError(f"{xml.name}: {why}")
    text = (
        f"int8 (int8, {int8_model.runtime_name()}) from {xml}, its parity measured against "
        f"this {ckpt.name} (SHA-256 {stored[int8_model.CHECKPOINT_KEY]:.12}) when written "
        "(not checked again: started without PyTorch)"
    )
    run = int8_model.compiled_runner(ir, onnx_threads())
    return _Model(run, stored, "; ".join([text, *int8_model.notes(stored)]))


# the engines the light path runs: the model file each reads and how it is opened
LIGHT_ENGINES: dict[str, tuple[str, Callable[[Path, Path], _Model]]] = {
    "auto": (RUN_ONNX, _onnx_model), "onnxruntime": (RUN_ONNX, _onnx_model),
    "int8": (RUN_INT8, _int8_model),
}  # fmt: skip


@dataclass
class LightPredictor:
    """Probabilities of tumour for uint8 patches (N x 96 x 96 x 3) from ``model.onnx``, or
    ``model.int8.xml`` for the int8 engine."""

    model: _Model
    meta: CheckpointMeta
    source: Path
    threshold: float
    tta: str
    batch_size: int = 256

    @classmethod
    def from_run(
        cls,
        checkpoint: Any,
        *,
        engine: str = "auto",
        device: str = "auto",
        tta: str | None = None,
        threshold: float | None = None,
        batch_size: int = 256,
    ) -> LightPredictor | None:
        """The light predictor of a run folder (or its ``checkpoint.pt``), or None (logged at
        debug level with the reason) when ``Predictor`` must be used (see the module notes)."""
        found = _usable_files(checkpoint, engine, device)
        try:
            if isinstance(found, str):
                raise MetastasisError(found)
            ckpt, model_file = found
            meta = read_checkpoint_meta(ckpt)
            if meta.preprocessing["input_size"] != 96:
                raise MetastasisError("the model resizes patches (PyTorch's interpolation)")
            if meta.preprocessing["stain"] is not None:
                raise MetastasisError("the model normalises stains (transforms.stain, PyTorch)")
            model = LIGHT_ENGINES[engine][1](model_file, ckpt)
            why = _mismatch(meta, model.stored)
            if why is not None:
                raise MetastasisError(f"{model_file.name}: {why}")
        except Exception as exc:  # any reason at all: the full path decides and says why
            log.debug("start-up without PyTorch not taken: %s", first_line(exc, with_type=True))
            return None
        tta = meta.tta if tta is None else tta
        if model.stored.get("invariance") == "d4":  # as models.effective_tta decides
            tta = "none"
        return cls(
            model, meta, model_file, meta.threshold if threshold is None else threshold,
            tta, batch_size,
        )  # fmt: skip

    def describe(self) -> str:
        return self.model.text

    def _prepare(self, images: np.ndarray) -> np.ndarray:
        """uint8 NHWC -> float32 NCHW, the arithmetic of ``Preprocessing``."""
        pre = self.meta.preprocessing
        x = images.astype(np.float32) / np.float32(255.0)
        if tuple(pre["mean"]) != (0.0, 0.0, 0.0) or tuple(pre["std"]) != (1.0, 1.0, 1.0):
            x -= np.asarray(pre["mean"], np.float32)
            x /= np.asarray(pre["std"], np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def _run(self, images: np.ndarray) -> np.ndarray:
        out = [
            self.model.run(self._prepare(images[i : i + self.batch_size]))
            for i in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(out).reshape(-1).astype(np.float32)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits before the temperature, test-time augmentation included."""
        if len(images) == 0:
            return np.zeros(0, np.float32)
        if self.tta != "d4":
            return self._run(images)
        views = []
        for k in range(8):  # transforms.augment.d4_view: k % 4 quarter turns, then a flip
            view = np.rot90(images, k % 4, axes=(1, 2))
            views.append(self._run(np.ascontiguousarray(view[:, :, ::-1] if k >= 4 else view)))
        return np.stack(views).mean(0, dtype=np.float32)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Probabilities after the checkpoint's temperature (float32, as ``Predictor``)."""
        z = self.logits(images)
        if self.meta.temperature != 1.0:
            z = z / np.float32(self.meta.temperature)
        return (1.0 / (1.0 + np.exp(-z.astype(np.float64)))).astype(np.float32)


def _session(onnx_file: Path) -> Any:
    """An ONNX Runtime CPU session, set up as ``export.onnx.onnx_session`` sets one up."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = onnx_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(os.fspath(onnx_file), options, providers=["CPUExecutionProvider"])
