"""A checkpoint made ready for slides: blocks of pixels in, tile probabilities out.

``SlideClassifier.from_checkpoint`` loads the bundle once for a whole folder of slides and
builds the engine through ``inference.runtime.make_engine`` (ONNX Runtime float32 on a CPU by
default, PyTorch on a GPU): the fully convolutional pass (``fullyconv``) when the model and
stride allow it, otherwise the checkpoint's ``Predictor`` on the tiles cut from each block.
Both apply the checkpoint's temperature, its threshold and (unless overridden) its TTA.

``fully_conv="auto"`` uses the fully convolutional pass only for strides below the patch
size, where tiles overlap and share computation. Measured on the 2-core CPU (shared, load
about 10; a 1920 x 1920 px JPEG TIFF at the model's mpp, 367 tissue tiles at stride 96, 3,273
at stride 32; whole ``analyse_slide`` time, ONNX Runtime): stride 32, fully convolutional 629
tiles/s (PyTorch engine 476) against 197 tile by tile; stride 96, 87 against 129 tile by
tile (the whole block, glass included, is computed).

Tile by tile from a run folder with its ``model.onnx``, on the CPU, ``from_checkpoint`` runs
``inference.light.LightPredictor`` and never imports PyTorch (about 4 CPU seconds of start-up
and 2-3 more to build the model and check the engine, per run: a quarter of a one-slide run's
CPU time at stride 96 on the mosaic slide); so does ``engine="int8"`` (always tile by tile)
with the run folder's ``model.int8.xml``, where its metadata shows it was checked against this
very checkpoint when written. The exactness it relies on is stated there.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from metastasis.checkpoint import FILENAME, Bundle, CheckpointMeta, checkpoint_path, load_checkpoint
from metastasis.config import TTA_MODES
from metastasis.data.decode import PATCH_SIZE
from metastasis.errors import MetastasisError
from metastasis.slides.tiling import tiles_per_block

if TYPE_CHECKING:
    from metastasis.inference.light import LightPredictor
    from metastasis.inference.predictor import Predictor
    from metastasis.slides import fullyconv
    from metastasis.transforms.stain import StainReference, StainSource

log = logging.getLogger(__name__)

FULLY_CONV = ("auto", "on", "off")


class SlideClassifier:
    """Tile probabilities for blocks of ``n x n`` tiles at ``stride`` model pixels."""

    def __init__(
        self,
        bundle: Bundle,
        stride: int = 96,
        engine: str = "auto",
        tta: str | None = None,
        device: str = "auto",
        batch_size: int = 256,
        fully_conv: str = "auto",
        block_tiles: int | None = None,
        threshold: float | None = None,
        onnx_file: str | Path | None = None,
    ) -> None:
        """``block_tiles``: tiles per block side (default: blocks of about 640 model px);
        ``threshold``: replaces the checkpoint's decision threshold (None: keep it);
        ``onnx_file``: the run folder's ``model.onnx`` (the int8 engine runs the int8 model
        beside it, tile by tile)."""
        from metastasis.inference.predictor import Predictor, auto_device
        from metastasis.inference.runtime import make_engine
        from metastasis.models import effective_tta
        from metastasis.slides import fullyconv

        tta = effective_tta(bundle.arch, bundle.tta if tta is None else tta)
        if tta not in TTA_MODES:
            raise MetastasisError(f"unknown tta {tta!r}; known: {', '.join(TTA_MODES)}")
        if fully_conv not in FULLY_CONV:
            raise MetastasisError(f"--fully-conv must be one of {', '.join(FULLY_CONV)}")
        if stride < 1:
            raise MetastasisError(f"--stride must be >= 1 model pixel, got {stride}")
        self.bundle: Bundle | CheckpointMeta = bundle
        self.stride = stride
        self.patch = PATCH_SIZE
        self.tta = tta
        self.threshold = bundle.threshold if threshold is None else threshold
        self.model_mpp = bundle.preprocessing.mpp
        self.device = auto_device(device)
        self.device_type = self.device.type
        prep = bundle.preprocessing
        reason = fullyconv.fully_conv_reason(bundle.arch, bundle.arch_kwargs, prep.input_size,
                                             stride)  # fmt: skip
        if prep.stain is not None and not reason:  # normalised patch by patch, as in predict
            reason = f"{prep.stain.method} stain normalisation is applied to each tile"
        if engine == "int8" and not reason:  # the int8 model is the per-tile model's
            reason = "the int8 model classifies tile by tile"
        if fully_conv == "on" and reason:
            raise MetastasisError(f"the fully convolutional pass cannot be used: {reason}")
        self.n = block_tiles or tiles_per_block(PATCH_SIZE, stride)
        self.side = fullyconv.block_side(stride, self.n) if stride <= PATCH_SIZE else 0
        self.block: fullyconv.BlockClassifier | None = None
        self.predictor: Predictor | LightPredictor | None = None
        if fully_conv == "auto" and not reason and stride >= PATCH_SIZE:
            reason = (
                f"stride {stride} >= {PATCH_SIZE}: tiles share no pixels, tile by tile is faster"
            )
        if fully_conv != "off" and not reason:
            self.mode = "fully-convolutional"
            fc = fullyconv.FullyConvolutional(bundle.build_model(), stride, prep)
            # the engine's probe: pixel values, as the folded model takes them
            probe_prep = replace(prep, input_size=self.side, mean=(0.0,) * 3, std=(1 / 255,) * 3)
            runner = make_engine(fc, probe_prep, self.device, engine)
            self.engine_text = runner.describe()
            self.block = fullyconv.BlockClassifier(
                runner, fullyconv.raw_input, self.n, self.device, tta, bundle.temperature
            )
        else:
            self.mode = "per-tile"
            if reason and fully_conv == "auto":
                log.info("per-tile classification (not fully convolutional: %s)", reason)
            self.predictor = Predictor(
                bundle.build_model(), prep, bundle.threshold, device, batch_size, tta,
                bundle.temperature, engine, onnx_file if engine == "int8" else None,
            )  # fmt: skip
            self.engine_text = self.predictor.engine.describe()

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | Bundle, **kwargs: Any) -> SlideClassifier:
        """The classifier of a checkpoint, a run folder or a ``Bundle``; keywords as the
        constructor's. Tile by tile from a run folder's ``model.onnx``, without PyTorch,
        where ``inference.light`` allows it (see the module notes)."""
        if isinstance(checkpoint, Bundle):
            return cls(checkpoint, **kwargs)
        light = _light_predictor(checkpoint, kwargs)
        if light is not None:
            return cls._without_torch(light, kwargs.get("stride", 96), kwargs.get("block_tiles"))
        if checkpoint_path(checkpoint).name == FILENAME:  # the int8 model lies beside model.onnx
            kwargs.setdefault("onnx_file", checkpoint_path(checkpoint).parent / "model.onnx")
        return cls(load_checkpoint(checkpoint), **kwargs)

    @classmethod
    def _without_torch(
        cls, light: LightPredictor, stride: int, block_tiles: int | None
    ) -> SlideClassifier:
        self = cls.__new__(cls)
        self.bundle = light.meta
        self.stride, self.patch, self.tta = stride, PATCH_SIZE, light.tta
        self.threshold = light.threshold
        self.model_mpp = float(light.meta.preprocessing["mpp"])
        self.device_type = "cpu"
        self.n = block_tiles or tiles_per_block(PATCH_SIZE, stride)
        self.side = PATCH_SIZE + stride * (self.n - 1) if stride <= PATCH_SIZE else 0
        self.block, self.predictor = None, light
        self.mode, self.engine_text = "per-tile", light.describe()
        return self

    @property
    def stain_reference(self) -> StainReference | None:
        """The checkpoint's stain normalisation reference (None: it does not normalise)."""
        pre = self.bundle.preprocessing  # a dict for a checkpoint read without PyTorch
        return None if isinstance(pre, dict) else pre.stain

    def use_stain_source(self, source: StainSource | None) -> None:
        """Normalise the next tiles with one slide's stain estimate (``stain.fit_source``;
        None: each tile with its own). Only a stain-normalising model classifies tile by tile
        through ``Preprocessing``; for any other this does nothing."""
        if self.stain_reference is None or not isinstance(self.bundle, Bundle):
            return
        from metastasis.inference.predictor import Predictor
        from metastasis.transforms.presets import SlidePreprocessing

        if isinstance(self.predictor, Predictor):
            base = self.bundle.preprocessing
            self.predictor.preprocessing = SlidePreprocessing.of(base, source)

    def classify(self, pixels: np.ndarray, selected: np.ndarray) -> np.ndarray:
        """Probabilities of the selected tiles of a block (NaN elsewhere).

        ``pixels``: the block (``self.side`` square, uint8 RGB); ``selected``: ``n x n``."""
        out = np.full(selected.shape, np.nan, np.float32)
        if not selected.any():
            return out
        if self.block is not None:
            probs = self.block.probabilities(pixels)
            out[selected] = probs[selected]
            return out
        assert self.predictor is not None
        rows, cols = np.nonzero(selected)
        s, p = self.stride, self.patch
        tiles = np.stack([pixels[r * s : r * s + p, c * s : c * s + p] for r, c in zip(rows, cols)])
        out[rows, cols] = self.predictor.predict_proba(tiles)
        return out


def _light_predictor(checkpoint: Any, kwargs: dict[str, Any]) -> LightPredictor | None:
    """A ``LightPredictor`` when the classifier would run tile by tile on the CPU from a run
    folder's ``model.onnx`` (ONNX Runtime) or, for the int8 engine (always tile by tile),
    ``model.int8.xml`` (OpenVINO); None otherwise (the constructor decides)."""
    stride, fully_conv = kwargs.get("stride", 96), kwargs.get("fully_conv", "auto")
    tta, engine = kwargs.get("tta"), kwargs.get("engine", "auto")
    int8 = engine == "int8" and fully_conv != "on"  # "on": the constructor refuses it
    per_tile = int8 or fully_conv == "off" or (fully_conv == "auto" and stride >= PATCH_SIZE)
    if not per_tile or not isinstance(stride, int) or stride < 1:
        return None
    if tta is not None and tta not in TTA_MODES:
        return None
    from metastasis.inference.light import LightPredictor

    light = LightPredictor.from_run(
        checkpoint, engine=engine, device=kwargs.get("device", "auto"), tta=tta,
        threshold=kwargs.get("threshold"), batch_size=kwargs.get("batch_size", 256),
    )  # fmt: skip
    if light is not None and fully_conv == "auto":
        why = f"stride {stride} >= {PATCH_SIZE}"
        why = "the int8 model classifies tile by tile" if int8 else why
        log.info("per-tile classification (not fully convolutional: %s)", why)
    return light
