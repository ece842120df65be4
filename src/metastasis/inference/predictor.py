"""A loaded model plus its preprocessing: probabilities and labels for patches.

`Predictor.predict` is the call a notebook needs: arrays, image files or a data folder in, a
table of ``id, probability, prediction`` (and ``truth`` for labelled data) out, at the
checkpoint's threshold. Inputs are read as the CLI reads them (`inference.inputs`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TypeGuard

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from metastasis.checkpoint import FILENAME, Bundle, checkpoint_path, load_checkpoint
from metastasis.config import TTA_MODES
from metastasis.data.cache import CachedSplit
from metastasis.data.dataset import PatchDataset, passthrough
from metastasis.errors import DataError, MetastasisError
from metastasis.export.onnx import RUN_ONNX
from metastasis.inference import inputs as read
from metastasis.inference.batches import Batch, EpochOutput, predict, scaled_logits
from metastasis.inference.runtime import Engine, make_engine
from metastasis.memory import configure_malloc
from metastasis.models import effective_tta
from metastasis.predictions import predictions_frame
from metastasis.transforms.presets import Preprocessing

log = logging.getLogger(__name__)


def _is_data(inputs: object) -> TypeGuard[str | Path]:
    """A folder, or a PCam HDF5 file: read through the cache."""
    return isinstance(inputs, (str, Path)) and (
        Path(inputs).is_dir() or Path(inputs).name.endswith((".h5", ".h5.gz"))
    )


def _paths(inputs: object) -> list[Path]:
    if isinstance(inputs, (str, Path)):
        return [Path(inputs)]
    if isinstance(inputs, (list, tuple)) and all(isinstance(p, (str, Path)) for p in inputs):
        return [Path(p) for p in inputs]
    raise DataError(
        f"expected uint8 patches, an image file, a list of image files or a data folder; "
        f"got {type(inputs).__name__}"
    )


def auto_device(device: str = "auto") -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Predictor:
    """Probabilities of tumour for batches of 96x96 RGB uint8 patches (N x H x W x 3).

    ``tta="d4"`` averages the logits of the 8 dihedral views; ``temperature`` divides the
    logits (temperature scaling). A checkpoint supplies both, and its threshold, by default.
    ``engine`` (``inference.runtime.ENGINES``): ``auto`` runs ONNX Runtime on a CPU, PyTorch
    elsewhere; ``self.engine.describe()`` says which.
    """

    def __init__(
        self,
        model: nn.Module,
        preprocessing: Preprocessing,
        threshold: float = 0.5,
        device: str = "auto",
        batch_size: int = 256,
        tta: str = "none",
        temperature: float = 1.0,
        engine: str = "auto",
        onnx_file: str | Path | None = None,
    ) -> None:
        if tta not in TTA_MODES:
            raise MetastasisError(f"unknown tta {tta!r}; known: {', '.join(TTA_MODES)}")
        configure_malloc()
        self.device = auto_device(device)
        # the engine puts the model in eval mode, on the device, in channels-last memory
        self.engine: Engine = make_engine(model, preprocessing, self.device, engine, onnx_file)
        self.model = model
        self.preprocessing = preprocessing
        self.threshold = threshold
        self.batch_size = batch_size
        self.tta = tta
        self.temperature = temperature
        self.bundle: Bundle | None = None

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        device: str = "auto",
        batch_size: int = 256,
        tta: str | None = None,
        engine: str = "auto",
        threshold: float | None = None,
    ) -> Predictor:
        """The checkpoint's model, preprocessing, threshold (unless ``threshold`` is given),
        temperature and (unless ``tta`` is given) test-time augmentation; ONNX Runtime runs the
        run folder's ``model.onnx`` where training wrote one (checked against the checkpoint
        first)."""
        bundle = load_checkpoint(path)
        ckpt = checkpoint_path(path)
        onnx_file = ckpt.parent / RUN_ONNX if ckpt.name == FILENAME else None
        self = cls(
            bundle.build_model(),
            bundle.preprocessing,
            bundle.threshold if threshold is None else threshold,
            device,
            batch_size,
            tta=effective_tta(bundle.arch, bundle.tta if tta is None else tta),
            temperature=bundle.temperature,
            engine=engine,
            onnx_file=onnx_file,
        )
        self.bundle = bundle
        return self

    def predict_proba(self, images: read.Inputs, resize: bool = False) -> np.ndarray:
        """Probabilities, one per patch in the order given: uint8 patches (N x 96 x 96 x 3, or
        one 96 x 96 x 3), or image files. A patch that is not 96x96 is refused (`DataError`)
        unless ``resize``; so is a file that cannot be used (use `predict` to leave such files
        out and list them)."""
        if not read.is_array(images):
            patches = read.read_files(_paths(images), resize)
            if len(patches.excluded):
                row = patches.excluded.iloc[0]
                raise DataError(f"{row['source']}: {row['problem']}: {row['detail']}")
            images = patches.images
        x = read.as_patch_batch(images, resize)  # type: ignore[arg-type]
        if len(x) == 0:
            return np.zeros(0, np.float32)
        return self._predict(self._batches(x)).probs

    def logits(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """Logits before the temperature (test-time augmentation included), one per patch of
        uint8 ``images`` (N x 96 x 96 x 3): `probabilities` turns them into the numbers
        `predict_proba` gives."""
        x = read.as_patch_batch(images)
        if len(x) == 0:
            return np.zeros(0, np.float32)
        out = self._predict(self._batches(x))
        assert out.logits is not None
        return np.asarray(out.logits, dtype=np.float32)

    def probabilities(self, logits: np.ndarray, temperature: float | None = None) -> np.ndarray:
        """Probabilities of `logits`' logits, computed exactly as `predict_proba` computes them:
        after this predictor's temperature, or after ``temperature`` (1: the model's own,
        uncalibrated probability)."""
        t = self.temperature if temperature is None else temperature
        raw = torch.from_numpy(np.asarray(logits, dtype=np.float32))
        return torch.sigmoid(scaled_logits(raw, t)).numpy()

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """1 where a probability reaches this predictor's threshold, else 0: the ``prediction``
        column of `predict`'s table (compared in float64, as `predictions_frame` compares)."""
        return (np.asarray(probabilities, dtype=np.float64) >= self.threshold).astype(np.int64)

    def _batches(self, x: torch.Tensor) -> list[Batch]:
        """``x`` in batches of ``batch_size``, unlabelled (-1)."""
        return [
            (x[i : i + self.batch_size], torch.full((min(self.batch_size, len(x) - i),), -1))
            for i in range(0, len(x), self.batch_size)
        ]

    def predict(
        self,
        inputs: read.Inputs,
        resize: bool = False,
        split: str | None = None,
        cache_dir: str | Path | None = None,
        progress: bool = False,
    ) -> pd.DataFrame:
        """A table of ``id, probability, prediction`` (1 where the probability reaches
        ``self.threshold``, the checkpoint's), plus ``truth`` when the data has labels.

        ``inputs``: uint8 patches (ids ``0..N-1``), an image file or a list of them (ids: the
        file names without extension), or a data folder / PCam file (any layout; ``split``
        as in ``metastasis predict``, default ``test`` or the only split; read through the
        cache in ``cache_dir``). As in the CLI, files that cannot be used are left out: they
        are listed in ``table.attrs["excluded"]`` (id, source, problem, detail) and logged.
        A patch that is not 96x96 is refused unless ``resize=True``.
        """
        if read.is_array(inputs):
            x = read.as_patch_batch(inputs, resize)  # type: ignore[arg-type]
            patches = read.Patches(np.arange(len(x)).astype(str).astype(object), x.numpy())
            probs = self.predict_proba(patches.images)
        elif _is_data(inputs):
            patches, probs = self._predict_data(inputs, resize, split, cache_dir, progress)
        else:
            patches = read.read_files(_paths(inputs), resize)
            probs = self.predict_proba(patches.images)
        table = predictions_frame(patches.ids, probs, self.threshold, patches.truth)
        table.attrs["excluded"] = patches.excluded
        if len(patches.excluded):
            log.warning(
                "%d files could not be predicted (e.g. %s: %s); listed in table.attrs['excluded']",
                len(patches.excluded),
                patches.excluded["source"].iloc[0],
                patches.excluded["problem"].iloc[0],
            )
        return table

    def _predict_data(
        self,
        path: str | Path,
        resize: bool,
        split: str | None,
        cache_dir: str | Path | None,
        progress: bool,
    ) -> tuple[read.Patches, np.ndarray]:
        cached = read.open_folder(path, split, cache_dir, progress)
        idx = cached.usable_indices()
        probs, _ = self.predict_split(cached, idx, progress)
        truth = cached.labels[idx].astype(np.int64) if cached.labelled else None
        patches = read.Patches(cached.ids[idx], np.zeros((0, *read.PATCH_SHAPE), np.uint8), truth)
        excluded = cached.excluded()
        if resize:  # the rows refused only for their size, resized, in their place
            rows, extra = read.resized_rows(cached, path)
            order = np.argsort(np.concatenate([idx, rows]), kind="stable")
            probs = np.concatenate([probs, self.predict_proba(extra.images)])[order]
            patches.ids = np.concatenate([patches.ids, extra.ids])[order]
            if truth is not None and extra.truth is not None:
                patches.truth = np.concatenate([truth, extra.truth])[order]
            excluded = pd.concat(
                [excluded[excluded["problem"] != read.WRONG_SIZE], extra.excluded],
                ignore_index=True,
            )
        patches.excluded = excluded
        return patches, probs

    def _predict(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> EpochOutput:
        return predict(
            self.engine, batches, self.preprocessing, self.device, self.tta, self.temperature
        )

    def predict_split(
        self, data: CachedSplit, indices: np.ndarray | None = None, progress: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (and labels, -1 when unlabelled) for the usable rows of a cached split."""
        ds = PatchDataset(data, indices)
        loader = DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=passthrough,
            pin_memory=self.device.type == "cuda",
        )
        bar = tqdm(loader, desc="predicting", unit="batch", disable=not progress, leave=False)
        out = self._predict(bar)
        return out.probs, out.labels
