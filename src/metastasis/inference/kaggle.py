"""Kaggle's submission rules for `metastasis predict --kaggle-submission`.

A submission to "Histopathologic Cancer Detection" is Kaggle's own ``id,label`` file (the label
is the probability of tumour; the one exception to `metastasis.predictions`' vocabulary) for the
images of ``DATA/test``, and Kaggle rejects it unless it has a row for every test image. So a
test image that cannot be predicted stops the command, naming it, unless ``--fill-unreadable P``
gives the probability to write for it. Generic prediction is `metastasis.inference.predict`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metastasis.errors import DataError

log = logging.getLogger(__name__)

SPLIT = "test"  # the split Kaggle scores


def check_fill_unreadable(fill_unreadable: float | None) -> None:
    """Refuse a ``--fill-unreadable`` that is not a probability (NaN included)."""
    if fill_unreadable is not None and not 0.0 <= fill_unreadable <= 1.0:
        raise DataError(f"--fill-unreadable must be a probability in [0, 1], got {fill_unreadable}")


def submission_split(layout: Any, data: str | Path) -> str:
    """The split to predict for a submission: ``test``, which ``data`` must have in Kaggle's
    layout (``layout`` is its `metastasis.data.layouts` layout)."""
    if layout.kind != "kaggle" or SPLIT not in layout.splits:
        raise DataError(f"{data}: --kaggle-submission needs the Kaggle layout with a test/ folder")
    return SPLIT


def missing_ids(excluded: pd.DataFrame, predicted: Sequence[str] | np.ndarray) -> list[str]:
    """Ids of the test images that will have no prediction (listed in ``excluded``, not among
    the ``predicted`` ids), sorted."""
    return sorted(set(excluded["id"]) - set(predicted))


def refuse_incomplete(
    missing: Sequence[str], fill_unreadable: float | None, data: str | Path, side: Path
) -> None:
    """Stop, naming the ``missing`` test images (all of them listed in ``side``), unless
    ``fill_unreadable`` gives a probability for them."""
    if missing and fill_unreadable is None:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(
            f"{Path(data) / SPLIT}: {len(missing)} test "
            f"image(s) cannot be predicted ({shown}; all in {side}); Kaggle rejects a "
            "submission without them: fix them, or give --fill-unreadable P"
        )


def submission_frame(
    ids: Sequence[str] | np.ndarray,
    probs: np.ndarray,
    missing: Sequence[str] = (),
    fill_unreadable: float | None = None,
    side: Path | None = None,
) -> pd.DataFrame:
    """Kaggle's ``id,label`` table: the predicted ``ids`` with their probabilities, then the
    ``missing`` ones with ``fill_unreadable`` (said in the log, with ``side``, their list)."""
    table = pd.DataFrame({"id": ids, "label": probs})
    if not missing:
        return table
    filled = pd.DataFrame({"id": list(missing), "label": fill_unreadable})
    log.warning(
        "%d test images could not be predicted: wrote %g for them (--fill-unreadable); "
        "listed in %s",
        len(missing),
        fill_unreadable,
        side,
    )
    return pd.concat([table, filled], ignore_index=True)
