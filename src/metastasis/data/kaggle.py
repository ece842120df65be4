"""The Kaggle layout: ``DIR/train/*.tif`` + ``DIR/train_labels.csv`` (``id,label``), unlabelled
``DIR/test/*.tif``.

The labels CSV is read as untrusted input: ids are only ever matched against the names of files
found in the split's folder (never joined into a path). Rows that cannot be trusted (a label
other than 0/1, an id given twice) are kept out of ``items`` and recorded in ``excluded``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd

from metastasis.data.listing import (
    BAD_LABEL,
    DUPLICATE_ID,
    MISSING_FILE,
    UNLABELLED_FILE,
    Excluded,
    Finding,
    Item,
    Listing,
    finding,
    image_files,
    listdir,
    rel_name,
    split_names,
)
from metastasis.errors import DataError, first_line

KAGGLE_LABELS = "train_labels.csv"


def has_tif(folder: Path) -> bool:
    return any(p.suffix.lower() in (".tif", ".tiff") for p in listdir(folder))


def read_labels(csv: Path) -> tuple[list[str], list[str]]:
    """Ids and raw labels (stripped strings) of ``train_labels.csv``; one clear error if the file
    cannot be read as UTF-8 CSV with the columns id and label (any order, any case, a byte-order
    mark and extra columns allowed)."""
    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{csv}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{csv}: empty file; expected a header line id,label") from None
    except OSError as exc:
        raise DataError(f"{csv}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{csv}: cannot parse: {first_line(exc)}") from None
    header = [str(c) for c in df.columns]
    df.columns = pd.Index([c.strip().lower() for c in header])
    if df.columns.duplicated().any():
        raise DataError(f"{csv}: columns repeated in the header {','.join(header)}")
    if not {"id", "label"} <= set(df.columns):
        hint = ""
        if len(header) == 2 and header[1].strip() in ("0", "1"):
            hint = " (no header line? the first line looks like data; add id,label above it)"
        raise DataError(f"{csv}: expected columns id,label, found {','.join(header)}{hint}")
    df = df.fillna("")
    return df["id"].str.strip().tolist(), df["label"].str.strip().tolist()


def list_kaggle(root: Path, split: str) -> Listing:
    paths, excluded = split_names(image_files(root / split), root)
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for p in paths:
        by_stem[p.stem].append(p)
    files = {stem: ps[0] for stem, ps in by_stem.items() if len(ps) == 1}
    clash = sorted(stem for stem, ps in by_stem.items() if len(ps) > 1)
    findings: list[Finding] = []
    if clash:
        findings.append(
            finding(DUPLICATE_ID, clash, "file names differing only in extension (all excluded)")
        )
        excluded += [
            Excluded(s, rel_name(p, root), DUPLICATE_ID, f"{len(by_stem[s])} files named {s}.*", p)
            for s in clash
            for p in by_stem[s]
        ]
    if split != "train":
        items = [Item(i, None, p) for i, p in sorted(files.items())]
        return Listing("kaggle", split, root, items, findings, labelled=False, excluded=excluded)
    ids, raw_labels = read_labels(root / KAGGLE_LABELS)
    counts = Counter(ids)
    dup = sorted(i for i, c in counts.items() if c > 1)
    if dup:
        findings.append(finding(DUPLICATE_ID, dup, "ids listed more than once (all rows excluded)"))
    bad = [f"{i} (label {lab!r})" for i, lab in zip(ids, raw_labels) if lab not in ("0", "1")]
    if bad:
        findings.append(finding(BAD_LABEL, bad, "labels outside {0, 1} (excluded)"))
    # Ids are only looked up among the files found in the split folder, so an id such as
    # "../x" or "/etc/passwd" can never name a file outside it: it is simply missing.
    missing = sorted(i for i in counts if i not in by_stem)
    if missing:
        findings.append(
            finding(MISSING_FILE, missing, f"ids in {KAGGLE_LABELS} with no image file")
        )
    unlabelled = sorted(files[i].name for i in files if i not in counts)
    if unlabelled:
        findings.append(
            finding(UNLABELLED_FILE, unlabelled, f"files in train/ not in {KAGGLE_LABELS}")
        )
    labels_of: dict[str, list[str]] = defaultdict(list)
    for i, lab in zip(ids, raw_labels):
        labels_of[i].append(lab)
    items = []
    for i, lab in zip(ids, raw_labels):
        if i not in files:
            continue
        if counts[i] > 1:
            if i in labels_of:  # one exclusion per file, however often it is listed
                listed = ", ".join(repr(v) for v in labels_of.pop(i))
                detail = f"listed {counts[i]} times in {KAGGLE_LABELS} (labels {listed})"
                excluded.append(
                    Excluded(i, rel_name(files[i], root), DUPLICATE_ID, detail, files[i])
                )
        elif lab not in ("0", "1"):
            excluded.append(
                Excluded(i, rel_name(files[i], root), BAD_LABEL, f"label {lab!r}", files[i])
            )
        else:
            items.append(Item(i, int(lab), files[i]))
    return Listing("kaggle", split, root, items, findings, excluded=excluded)
