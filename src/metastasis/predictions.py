"""The one vocabulary of the per-patch tables the package writes (DESIGN principle 13).

Every per-patch CSV (``predict``'s output, ``evaluate``'s ``predictions.csv`` and ``errors.csv``,
the run folder's ``val_predictions.csv`` and ``splits.csv``, ``explain``'s ``explanations.csv``)
starts with the columns of `COLUMNS` that it has, in this order:

* ``id``: the patch's id as the data layer lists it (`metastasis.data.layouts`): the Kaggle id
  (the ``.tif`` file's stem), a folder image's file stem (``patch0029847``), a PCam HDF5 row's
  ``<split>_<row>`` (``valid_000123``). Never a path. Ids are unique within a split: the listing
  excludes every copy of a stem found twice (in ``0/`` and ``1/``, or with two extensions), so
  a file about one split can be joined on ``id`` alone; a file that covers several splits
  (``splits.csv``) adds a ``split`` column, and ``(split, id)`` is the key.
* ``probability``: of tumour, after the checkpoint's temperature and test-time augmentation;
* ``prediction``: 1 where ``probability`` reaches the threshold in use, else 0;
* ``truth``: the label (0 normal, 1 tumour), only where the data has labels.

Extra columns (``split``, ``kind``, ``centre_share``, ``png``) come after them. Kaggle's
submission file keeps Kaggle's own ``id,label`` and is the one exception.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metastasis.io import atomic_path

ID, PROBABILITY, PREDICTION, TRUTH = "id", "probability", "prediction", "truth"
COLUMNS = (ID, PROBABILITY, PREDICTION, TRUTH)
FLOAT_FORMAT = "%.6f"  # probabilities in CSV files


def predictions_frame(
    ids: Any,
    probs: Any,
    threshold: float,
    truth: Any | None = None,
    **extra: Any,
) -> pd.DataFrame:
    """``id, probability, prediction[, truth]`` and then the ``extra`` columns, in that order.

    ``prediction`` is ``probability >= threshold``; ``truth`` is left out when it is None."""
    probs = np.asarray(probs, dtype=np.float64)
    columns: dict[str, Any] = {
        ID: np.asarray(ids, dtype=object),
        PROBABILITY: probs,
        PREDICTION: (probs >= threshold).astype(np.int64),
    }
    if truth is not None:
        columns[TRUTH] = np.asarray(truth).astype(np.int64)
    return pd.DataFrame({**columns, **extra})


def labels_frame(ids: Any, truth: Any, **extra: Any) -> pd.DataFrame:
    """``id, truth`` and then the ``extra`` columns: a per-patch table without predictions."""
    return pd.DataFrame(
        {ID: np.asarray(ids, dtype=object), TRUTH: np.asarray(truth).astype(np.int64), **extra}
    )


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """``table`` as CSV at ``path`` (atomically; probabilities with 6 decimals)."""
    with atomic_path(Path(path)) as tmp:
        table.to_csv(tmp, index=False, float_format=FLOAT_FORMAT)
