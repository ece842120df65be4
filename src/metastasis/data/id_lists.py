"""Lists of patch ids the user gives (``train --exclude FILE``), and leaving those patches out.

A list is a CSV file with an ``id`` column (e.g. the EDA's ``flagged.csv``: ``id, reason``;
other columns are ignored) or a text file with one id per line (blank lines and lines starting
with ``#`` skipped). Ids are those of the data layer (`metastasis.predictions`): a Kaggle id, a
file stem, a PCam ``<split>_<row>``. A file is read as CSV when its first line is ``id`` or has
a comma.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from metastasis.data.cache import CachedSplit
from metastasis.errors import DataError, first_line

log = logging.getLogger(__name__)


def read_id_list(path: str | Path) -> frozenset[str]:
    """The ids listed in ``path``; one clear `DataError` when it cannot be read or lists none."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot read id list ({exc.strerror or exc})") from None
    lines = text.splitlines()
    header = lines[0].strip() if lines else ""
    if "," in header or header.lower() == "id":
        ids = _csv_ids(p, text)
    else:
        ids = [line.strip() for line in lines]
        ids = [i for i in ids if i and not i.startswith("#")]
    if not ids:
        raise DataError(f"{p}: lists no ids (a CSV with an id column, or one id per line)")
    return frozenset(ids)


def _csv_ids(path: Path, text: str) -> list[str]:
    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot parse as CSV: {first_line(exc)}") from None
    columns = {str(c).strip().lower(): c for c in table.columns}
    if "id" not in columns:
        found = ",".join(str(c) for c in table.columns)
        raise DataError(f"{path}: expected a column id, found {found}")
    return [i for i in (s.strip() for s in table[columns["id"]]) if i]


@dataclass(frozen=True)
class LeftOut:
    """What an id list left out of a run: recorded in the run folder's ``data.json``."""

    file: str
    n_ids: int  # ids in the file
    n_matched: int  # of them, ids found in the training or validation data
    train: int  # usable training patches left out
    val: int  # usable validation patches left out

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "n_ids": self.n_ids,
            "n_matched": self.n_matched,
            "train": self.train,
            "val": self.val,
        }


def leave_out(
    path: str | Path,
    train: CachedSplit,
    train_idx: np.ndarray,
    val: CachedSplit,
    val_idx: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, LeftOut]:
    """``train_idx`` and ``val_idx`` without the rows whose id ``path`` lists, and the counts.

    Refused (`DataError`) when the list names none of the data's ids: a list meant for other
    data, or ids in another form (a path instead of a stem), would otherwise change nothing."""
    ids = read_id_list(path)
    known = set(train.ids) | set(val.ids)
    matched = ids & known
    if not matched:
        example = sorted(ids)[0]
        raise DataError(
            f"{path}: none of its {len(ids)} ids (e.g. {example!r}) is in the training or "
            "validation data; ids are file stems, Kaggle ids or PCam <split>_<row>"
        )
    keep_train = _not_in(train.ids[train_idx], matched)
    keep_val = _not_in(val.ids[val_idx], matched)
    record = LeftOut(
        str(path),
        len(ids),
        len(matched),
        int((~keep_train).sum()),
        int((~keep_val).sum()),
    )
    log.info(
        "%s: left out %d training and %d validation patches (%d of its %d ids are in the data)",
        path,
        record.train,
        record.val,
        record.n_matched,
        record.n_ids,
    )
    return train_idx[keep_train], val_idx[keep_val], record


def _not_in(ids: np.ndarray, listed: set[str] | frozenset[str]) -> np.ndarray:
    return np.fromiter((i not in listed for i in ids), dtype=bool, count=len(ids))
