"""`metastasis predict`: one row per patch, or Kaggle's submission file."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from metastasis.data.cache import open_split
from metastasis.data.layouts import open_layout
from metastasis.engine.checkpoint import checkpoint_path
from metastasis.errors import DataError
from metastasis.inference.predictor import Predictor
from metastasis.io import atomic_path, check_outputs

log = logging.getLogger(__name__)

PREDICT_SPLITS = ("test",)


def predict_to_csv(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    split: str | None = None,
    kaggle_submission: bool = False,
    batch_size: int = 256,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    progress: bool = True,
    tta: str | None = None,
    engine: str = "auto",
) -> pd.DataFrame:
    """Predict every usable patch of ``data`` and write ``out`` (CSV, atomically).

    Rows: ``id,probability,label`` (label = probability >= the checkpoint's threshold). With
    ``kaggle_submission``: Kaggle's ``id,label`` with the probability as label, for
    ``DATA/test/*.tif``. Unusable files are left out, counted and listed in ``OUT.excluded.csv``.
    ``tta`` (none, d4) overrides the checkpoint's test-time augmentation; ``engine`` is one of
    ``inference.runtime.ENGINES`` (``auto``: the fastest exact one).
    """
    out_path = Path(out)
    side = out_path.with_name(out_path.name + ".excluded.csv")
    layout = open_layout(data)
    check_outputs(
        files=[out_path, side], inputs=[checkpoint_path(checkpoint)], is_input=layout.is_input
    )
    if kaggle_submission:
        if layout.kind != "kaggle" or "test" not in layout.splits:
            raise DataError(
                f"{data}: --kaggle-submission needs the Kaggle layout with a test/ folder"
            )
        split = "test"
    predictor = Predictor.from_checkpoint(checkpoint, device, batch_size, tta, engine)
    cached = open_split(
        data, split, PREDICT_SPLITS, Path(cache_dir) if cache_dir else None, progress
    )
    idx = cached.usable_indices()
    log.info("engine: %s", predictor.engine.describe())  # once the data is known to be good
    probs, _ = predictor.predict_split(cached, idx, progress)
    ids = cached.ids[idx]
    if kaggle_submission:
        table = pd.DataFrame({"id": ids, "label": probs})
    else:
        table = pd.DataFrame(
            {"id": ids, "probability": probs, "label": (probs >= predictor.threshold).astype(int)}
        )
    with atomic_path(out_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    excluded = cached.excluded()
    if len(excluded):
        with atomic_path(side) as tmp:
            excluded.to_csv(tmp, index=False)
        log.warning("%d files could not be predicted; listed in %s", len(excluded), side)
    return table
