"""`metastasis predict`: one row per patch, or Kaggle's submission file (its rules are
`metastasis.inference.kaggle`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from metastasis.checkpoint import checkpoint_path
from metastasis.data.cache import open_split
from metastasis.data.layouts import open_layout
from metastasis.inference import kaggle
from metastasis.inference.predictor import Predictor
from metastasis.io import atomic_path, check_outputs
from metastasis.predictions import predictions_frame, write_table

log = logging.getLogger(__name__)

PREDICT_SPLITS = ("test",)


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


def _write_excluded(path: Path, excluded: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        excluded.to_csv(tmp, index=False)
