"""`metastasis predict`: one row per patch, or Kaggle's submission file (its rules are
`metastasis.inference.kaggle`).

``--data`` may also be one image file (or, from Python, a list of them): ``predict_images``
then decodes the files directly (no cache) and, where it can, runs the run folder's
``model.onnx`` without importing PyTorch or pandas (``inference.light``): the whole process of
``metastasis predict`` on one image is then mostly Python's and ONNX Runtime's start-up.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from metastasis.checkpoint import checkpoint_path
from metastasis.errors import DataError
from metastasis.io import atomic_path, check_outputs

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

PREDICT_SPLITS = ("test",)
EXCLUDED_COLUMNS = ("id", "source", "problem", "detail")  # as inference.inputs


def is_image_file(data: str | Path) -> bool:
    """Whether ``--data`` names one image file (not a folder, not a PCam ``.h5`` file)."""
    from metastasis.data.decode import image_extensions

    p = Path(data)
    return p.is_file() and p.suffix.lower() in image_extensions()


@dataclass
class Written:
    """What ``predict_images`` wrote: ids, probabilities (float32) and the threshold used."""

    ids: list[str]
    probabilities: np.ndarray
    threshold: float
    excluded: list[tuple[str, str, str, str]]  # id, source, problem, detail
    engine: str

    def __len__(self) -> int:
        return len(self.ids)

    def frame(self) -> pd.DataFrame:
        """The rows written, as ``predictions.predictions_frame`` makes them."""
        import pandas as pd

        from metastasis.predictions import predictions_frame

        table = predictions_frame(self.ids, self.probabilities, self.threshold)
        table.attrs["excluded"] = pd.DataFrame(self.excluded, columns=list(EXCLUDED_COLUMNS))
        return table


def predict_to_csv(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    kaggle_submission: bool = False,
    batch_size: int = 256,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    progress: bool = True,
    tta: str | None = None,
    engine: str = "auto",
    fill_unreadable: float | None = None,
    threshold: float | None = None,
) -> pd.DataFrame:
    """Predict every usable patch of ``data`` and write ``out`` (CSV, atomically).

    Rows: ``id,probability,prediction`` (prediction = probability >= the checkpoint's
    threshold), and ``truth`` where the data has labels (`metastasis.predictions`). With
    ``kaggle_submission``: Kaggle's ``id,label`` with the probability as label, for
    ``DATA/test/*.tif``. Unusable files are left out, counted and listed in ``OUT.excluded.csv``.
    ``tta`` (none, d4) overrides the checkpoint's test-time augmentation; ``engine`` is one of
    ``inference.runtime.ENGINES`` (``auto``: the fastest exact one).

    A Kaggle submission must have a row for every test image (Kaggle rejects it otherwise):
    when some cannot be predicted the command stops, naming them, unless ``fill_unreadable``
    gives the probability to write for them (said in the log, listed in ``OUT.excluded.csv``).
    """
    from metastasis.data.cache import open_split
    from metastasis.data.layouts import open_layout
    from metastasis.inference import kaggle
    from metastasis.inference.predictor import Predictor
    from metastasis.predictions import predictions_frame, write_table

    if not kaggle_submission and is_image_file(data):
        return predict_images(
            checkpoint, [data], out, batch_size=batch_size, device=device, tta=tta,
            engine=engine, threshold=threshold,
        ).frame()  # fmt: skip
    kaggle.check_fill_unreadable(fill_unreadable)
    out_path = Path(out)
    side = out_path.with_name(out_path.name + ".excluded.csv")
    layout = open_layout(data)
    check_outputs(
        files=[out_path, side], inputs=[checkpoint_path(checkpoint)], is_input=layout.is_input
    )
    if kaggle_submission:
        split = kaggle.submission_split(layout, data)
    predictor = Predictor.from_checkpoint(
        checkpoint, device=device, batch_size=batch_size, tta=tta, engine=engine,
        threshold=threshold,
    )  # fmt: skip
    cached = open_split(
        data, split, PREDICT_SPLITS, Path(cache_dir) if cache_dir else None, progress
    )
    idx = cached.usable_indices()
    excluded = cached.excluded()
    missing = kaggle.missing_ids(excluded, cached.ids[idx]) if kaggle_submission else []
    if missing:  # listed before anything is predicted, whether the command stops or fills
        _write_excluded(side, excluded)
        kaggle.refuse_incomplete(missing, fill_unreadable, data, side)
    log.info("engine: %s", predictor.engine.describe())  # once the data is known to be good
    probs, labels = predictor.predict_split(cached, idx, progress)
    ids = cached.ids[idx]
    if kaggle_submission:
        table = kaggle.submission_frame(ids, probs, missing, fill_unreadable, side)
    else:
        table = predictions_frame(
            ids, probs, predictor.threshold, labels if cached.labelled else None
        )
    write_table(table, out_path)
    if len(excluded) and not missing:
        _write_excluded(side, excluded)
        log.warning("%d files could not be predicted; listed in %s", len(excluded), side)
    return table


def predict_images(
    checkpoint: Any,
    files: Sequence[str | Path],
    out: str | Path,
    *,
    batch_size: int = 256,
    device: str = "auto",
    tta: str | None = None,
    engine: str = "auto",
    threshold: float | None = None,
) -> Written:
    """Predict image files into ``out`` (``id,probability,prediction``, as ``predict_to_csv``
    writes it; files that cannot be used in ``OUT.excluded.csv``), decoding them directly.

    Where the checkpoint is a run folder with its ``model.onnx``, on the CPU, neither PyTorch
    nor pandas is imported (``inference.light``: the exactness it relies on is stated there);
    otherwise a ``Predictor`` runs as for a data folder. The engine used is logged."""
    from metastasis.data.decode import decode_file

    out_path = Path(out)
    side = out_path.with_name(out_path.name + ".excluded.csv")
    paths = [Path(f) for f in files]
    check_outputs(files=[out_path, side], inputs=[checkpoint_path(checkpoint), *paths])
    ids, images, excluded = [], [], []
    for p in paths:
        pixels, problem, detail = decode_file(p)
        if pixels is None:
            excluded.append((p.stem, str(p), str(problem), detail))
        else:
            ids.append(p.stem)
            images.append(pixels)
    if not ids:
        _, source, problem, detail = excluded[0]
        if len(paths) == 1:
            raise DataError(f"{source}: {problem}: {detail}")
        raise DataError(f"none of the {len(paths)} files can be used ({source}: {problem})")
    batch = np.stack(images)
    probs, used, engine_text = _image_probabilities(
        checkpoint, batch, batch_size=batch_size, device=device, tta=tta, engine=engine,
        threshold=threshold,
    )  # fmt: skip
    log.info("engine: %s", engine_text)
    written = Written(ids, probs, used, excluded, engine_text)
    with atomic_path(out_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        rows = csv.writer(fh, lineterminator="\n")
        rows.writerow(["id", "probability", "prediction"])
        for i, prob in zip(ids, probs.astype(np.float64), strict=True):
            rows.writerow([i, f"{prob:.6f}", int(prob >= used)])
    if excluded:
        with atomic_path(side) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            rows = csv.writer(fh, lineterminator="\n")
            rows.writerows([EXCLUDED_COLUMNS, *excluded])
        log.warning("%d files could not be predicted; listed in %s", len(excluded), side)
    return written


def _image_probabilities(
    checkpoint: Any, images: np.ndarray, **options: Any
) -> tuple[np.ndarray, float, str]:
    """(probabilities, threshold used, engine description): ``LightPredictor`` where it can
    run, else ``Predictor``."""
    from metastasis.inference.light import LightPredictor

    light = LightPredictor.from_run(checkpoint, **options)
    if light is not None:
        return light.predict_proba(images), light.threshold, light.describe()
    from metastasis.inference.predictor import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, **options)
    probs = predictor.predict_proba(images)
    return probs, predictor.threshold, predictor.engine.describe()


def _write_excluded(path: Path, excluded: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        excluded.to_csv(tmp, index=False)
