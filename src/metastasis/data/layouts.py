"""Find out which of the three layouts a path holds and list its items, without decoding pixels.

Layouts, each turned into the same `Listing` (items + index-level findings):

* Kaggle: ``DIR/train/*.tif`` + ``DIR/train_labels.csv`` (``id,label``), unlabelled
  ``DIR/test/*.tif``.
* PCam HDF5: ``camelyonpatch_level_2_split_{split}_{x,y}.h5`` (or ``.h5.gz``), one file or a folder.
* Folder per class: ``DIR/0/*``, ``DIR/1/*`` (any image Pillow reads); a folder of such folders
  (``DIR/train/0``, ``DIR/valid/1``, ...) gives one split per sub-folder; a flat folder of images
  is one unlabelled split.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from metastasis.data.decode import image_extensions
from metastasis.errors import DataError

PCAM_RE = re.compile(r"^camelyonpatch_level_2_split_(?P<split>\w+?)_(?P<xy>[xy])\.h5(?P<gz>\.gz)?$")
KAGGLE_LABELS = "train_labels.csv"
CLASS_DIRS = ("0", "1")

# Index-level problem kinds (see also decode.py for per-image kinds).
MISSING_FILE = "missing_file"
UNLABELLED_FILE = "unlabelled_file"
DUPLICATE_ID = "duplicate_id"
BAD_LABEL = "bad_label"


@dataclass(frozen=True)
class Item:
    """One patch: an image file, or row `row` of a PCam HDF5 file."""

    id: str
    label: int | None
    path: Path | None = None
    row: int = -1


@dataclass
class Finding:
    """One kind of problem, with how many items it touches and the first few of them."""

    kind: str
    count: int
    examples: list[str] = field(default_factory=list)
    description: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "count": self.count,
            "description": self.description,
            "examples": self.examples,
        }


@dataclass
class Listing:
    """The usable items of one split, and what was wrong with the index (CSV, folders)."""

    layout: str  # "kaggle" | "pcam-h5" | "folder"
    split: str
    root: Path
    items: list[Item]
    findings: list[Finding] = field(default_factory=list)
    labelled: bool = True
    h5_files: tuple[Path, ...] = ()  # PCam: (x file, y file)


class Layout:
    """The splits a path holds, listed lazily."""

    def __init__(self, kind: str, root: Path, splits: dict[str, object]) -> None:
        self.kind = kind
        self.root = root
        self._splits = splits  # name -> argument for the lister

    @property
    def splits(self) -> list[str]:
        return list(self._splits)

    def listing(self, split: str) -> Listing:
        if split not in self._splits:
            raise DataError(f"{self.root}: no split {split!r}; it has {', '.join(self.splits)}")
        arg = self._splits[split]
        if self.kind == "kaggle":
            return _list_kaggle(self.root, split)
        if self.kind == "pcam-h5":
            assert isinstance(arg, tuple)
            return _list_pcam(self.root, split, arg)
        assert isinstance(arg, Path)
        return _list_folder(arg, split)

    def choose_split(self, split: str | None, prefer: tuple[str, ...]) -> str:
        """The split to use: the one asked for, else the first preferred one present, else the
        only one; with several and no way to choose, ask the user."""
        if split is not None:
            if split not in self._splits:
                raise DataError(f"{self.root}: no split {split!r}; it has {', '.join(self.splits)}")
            return split
        for name in prefer:
            if name in self._splits:
                return name
        if len(self._splits) == 1:
            return self.splits[0]
        raise DataError(
            f"{self.root}: holds splits {', '.join(self.splits)}; choose one with --split"
        )


def open_layout(path: str | Path) -> Layout:
    """Detect the layout at ``path`` (a folder, or one PCam .h5/.h5.gz file)."""
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    if root.is_file():
        m = PCAM_RE.match(root.name)
        if not m:
            raise DataError(f"{root}: not a PCam file (camelyonpatch_level_2_split_<split>_x.h5)")
        files = _pcam_pair(root.parent, m["split"])
        return Layout("pcam-h5", root.parent, {m["split"]: files})
    if not root.is_dir():
        raise DataError(f"{root}: not a regular file or folder")
    if (root / KAGGLE_LABELS).is_file() or ((root / "train").is_dir() and _has_tif(root / "train")):
        splits: dict[str, object] = {}
        if (root / "train").is_dir():
            splits["train"] = None
        if (root / "test").is_dir():
            splits["test"] = None
        if "train" in splits and not (root / KAGGLE_LABELS).is_file():
            raise DataError(f"{root}: Kaggle layout without {KAGGLE_LABELS}")
        return Layout("kaggle", root, splits)
    pcam_splits = sorted(
        {m["split"] for p in root.iterdir() if (m := PCAM_RE.match(p.name)) and m["xy"] == "x"}
    )
    if pcam_splits:
        return Layout("pcam-h5", root, {s: _pcam_pair(root, s) for s in pcam_splits})
    if _is_class_folder(root):
        return Layout("folder", root, {root.name: root})
    subs = sorted(p for p in root.iterdir() if p.is_dir() and _is_class_folder(p))
    if subs:
        return Layout("folder", root, {p.name: p for p in subs})
    if any(p.suffix.lower() in image_extensions() for p in root.iterdir() if p.is_file()):
        return Layout("folder", root, {root.name: root})
    raise DataError(
        f"{root}: no known layout (expected Kaggle train/ + {KAGGLE_LABELS}, PCam "
        "camelyonpatch_level_2_split_*_x.h5, class folders 0/ and 1/, or a folder of images)"
    )


def _has_tif(folder: Path) -> bool:
    return any(p.suffix.lower() in (".tif", ".tiff") for p in folder.iterdir())


def _is_class_folder(folder: Path) -> bool:
    return any((folder / c).is_dir() for c in CLASS_DIRS)


def _pcam_pair(folder: Path, split: str) -> tuple[Path, Path | None]:
    def find(xy: str) -> Path | None:
        for suffix in (".h5", ".h5.gz"):
            p = folder / f"camelyonpatch_level_2_split_{split}_{xy}{suffix}"
            if p.is_file():
                return p
        return None

    x = find("x")
    if x is None:
        raise DataError(
            f"{folder}: no camelyonpatch_level_2_split_{split}_x.h5 for split {split!r}"
        )
    return x, find("y")


def _image_files(folder: Path) -> list[Path]:
    exts = image_extensions()
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in exts and not p.is_dir())


def _finding(kind: str, names: list[str], description: str) -> Finding:
    return Finding(kind, len(names), names[:10], description)


def _dedupe(items: list[Item]) -> tuple[list[Item], list[Finding]]:
    """Drop every item whose id occurs more than once: we cannot tell which copy is right."""
    counts = Counter(it.id for it in items)
    dup = sorted(i for i, c in counts.items() if c > 1)
    if not dup:
        return items, []
    dup_set = set(dup)
    kept = [it for it in items if it.id not in dup_set]
    return kept, [_finding(DUPLICATE_ID, dup, "ids listed more than once (all copies excluded)")]


def _list_kaggle(root: Path, split: str) -> Listing:
    files = {p.stem: p for p in _image_files(root / split)}
    if split != "train":
        items = [Item(i, None, p) for i, p in sorted(files.items())]
        return Listing("kaggle", split, root, items, labelled=False)
    csv = root / KAGGLE_LABELS
    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{csv}: cannot read: {exc}") from None
    if not {"id", "label"} <= set(df.columns):
        raise DataError(f"{csv}: expected columns id,label, found {','.join(df.columns)}")
    findings: list[Finding] = []
    ids = df["id"].str.strip().tolist()
    raw_labels = df["label"].str.strip().tolist()
    counts = Counter(ids)
    dup = sorted(i for i, c in counts.items() if c > 1)
    if dup:
        findings.append(
            _finding(DUPLICATE_ID, dup, "ids listed more than once (all rows excluded)")
        )
    bad = [f"{i} (label {lab!r})" for i, lab in zip(ids, raw_labels) if lab not in ("0", "1")]
    if bad:
        findings.append(_finding(BAD_LABEL, bad, "labels outside {0, 1} (excluded)"))
    missing = sorted(i for i in counts if i not in files)
    if missing:
        findings.append(
            _finding(MISSING_FILE, missing, f"ids in {KAGGLE_LABELS} with no image file")
        )
    labelled_ids = set(counts)
    unlabelled = sorted(files[i].name for i in files if i not in labelled_ids)
    if unlabelled:
        findings.append(
            _finding(UNLABELLED_FILE, unlabelled, f"files in train/ not in {KAGGLE_LABELS}")
        )
    dup_set = set(dup)
    items = [
        Item(i, int(lab), files[i])
        for i, lab in zip(ids, raw_labels)
        if i in files and i not in dup_set and lab in ("0", "1")
    ]
    return Listing("kaggle", split, root, items, findings)


def _list_folder(folder: Path, split: str) -> Listing:
    if not _is_class_folder(folder):
        items = [Item(p.stem, None, p) for p in _image_files(folder)]
        kept, findings = _dedupe(items)
        return Listing("folder", split, folder, kept, findings, labelled=False)
    items = []
    for c in CLASS_DIRS:
        if (folder / c).is_dir():
            items += [Item(p.stem, int(c), p) for p in _image_files(folder / c)]
    findings = []
    stray = sorted(p.name for p in _image_files(folder))
    if stray:
        findings.append(
            _finding(UNLABELLED_FILE, stray, "images outside the class folders 0/ and 1/")
        )
    others = sorted(
        p.name + "/" for p in folder.iterdir() if p.is_dir() and p.name not in CLASS_DIRS
    )
    if others:
        findings.append(_finding(BAD_LABEL, others, "folders other than 0/ and 1/ (not read)"))
    kept, dup_findings = _dedupe(items)
    return Listing("folder", split, folder, kept, findings + dup_findings)


def _list_pcam(root: Path, split: str, files: tuple[Path, Path | None]) -> Listing:
    x, y = files
    # Row count and labels are read when the cache is built (they need the decompressed file).
    return Listing(
        "pcam-h5", split, root, [], labelled=y is not None, h5_files=(x,) if y is None else (x, y)
    )


def group_names(items: list[Item]) -> dict[int | None, int]:
    """Counts per label."""
    out: dict[int | None, int] = defaultdict(int)
    for it in items:
        out[it.label] += 1
    return dict(out)
