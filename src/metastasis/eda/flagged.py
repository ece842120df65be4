"""``flagged.csv``: the patches of the analysed split worth leaving out of training, one row each.

Columns ``id, reason, split, path``: ``id`` is the patch's id as every CSV of the package gives it
(the Kaggle id, the file stem), so `metastasis train --exclude EDA_DIR/flagged.csv` leaves them
out; ``path`` is the patch's name inside its split (``0/patch0005512.jpg``). A patch is listed
once, under the first reason that holds, in this order:

* ``blank``, ``background``, ``blurry``: the quality flags of the image statistics;
* ``duplicate``: the same pixels as a patch that is kept: an earlier one of the split, or one of
  another split the report covers (so a validation patch has no copy in training);
* ``near_duplicate``: in a near-duplicate group (pHash), every patch but the group's first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from metastasis.eda.analysis import SplitAnalysis

__all__ = ["COLUMNS", "REASONS", "flagged_patches"]

COLUMNS = ["id", "reason", "split", "path"]
REASONS = ("blank", "background", "blurry", "duplicate", "near_duplicate")
_FLAGS = {"blank": "blank", "background": "background_only", "blurry": "blurry"}


def flagged_patches(
    a: SplitAnalysis,
    near_groups: Sequence[np.ndarray],
    other_digests: Iterable[str] = (),
) -> pd.DataFrame:
    """The flagged patches of ``a`` (row order of the split), columns :data:`COLUMNS`.

    ``near_groups``: near-duplicate groups as positions into ``a.rows``; ``other_digests``: the
    pixel digests of the usable patches of the other splits."""
    n = len(a.rows)
    masks = {reason: a.flags[flag] for reason, flag in _FLAGS.items()}
    digests = a.cached.digests[a.rows]
    _, first = np.unique(digests, return_index=True)
    copy = np.ones(n, bool)
    copy[first] = False  # every later copy of the same pixels
    masks["duplicate"] = copy | np.isin(digests, list(set(other_digests)))
    near = np.zeros(n, bool)
    for g in near_groups:
        near[np.sort(g)[1:]] = True
    masks["near_duplicate"] = near
    reason = np.full(n, "", dtype=object)
    for name in reversed(REASONS):  # the first reason that holds wins
        reason[masks[name]] = name
    idx = np.flatnonzero(reason != "")
    return pd.DataFrame(
        {
            "id": a.cached.ids[a.rows[idx]].astype(str),
            "reason": reason[idx],
            "split": a.cached.meta["split"],
            "path": a.names(idx),
        },
        columns=COLUMNS,
    )
