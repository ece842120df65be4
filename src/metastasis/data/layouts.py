"""Find out which of the three layouts a path holds and list its items, without decoding pixels.

Layouts, each turned into the same `Listing` (items + index-level findings):

* Kaggle: ``DIR/train/*.tif`` + ``DIR/train_labels.csv`` (``id,label``), unlabelled
  ``DIR/test/*.tif``.
* PCam HDF5: ``camelyonpatch_level_2_split_{split}_{x,y}.h5`` (or ``.h5.gz``), one file or a folder.
* Folder per class: ``DIR/0/*``, ``DIR/1/*`` (TIFF, PNG, JPEG, BMP or WebP files, see decode.py;
  other image files are listed, then refused by name); a folder of such folders
  (``DIR/train/0``, ``DIR/valid/1``, ...) gives one split per sub-folder; a flat folder of images
  is one unlabelled split.

The index is read as untrusted input: ids are only ever matched against the names of files found
in the split's folder (never joined into a path), a folder is listed one level deep (so a
symbolic-link cycle cannot hang it), and a file whose name is not valid UTF-8 is excluded by name.
Index rows that cannot be trusted (a label other than 0/1, an id given twice) are kept out of
``items`` and recorded in ``excluded``, so they reach the run folder's ``excluded.csv``.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from metastasis.data.decode import UNREADABLE, image_extensions
from metastasis.errors import DataError, first_line

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


@dataclass(frozen=True)
class Excluded:
    """A file (or index row) left out by the listing itself, before any pixel is decoded."""

    id: str
    source: str  # printable path relative to the listing's root
    kind: str  # DUPLICATE_ID, BAD_LABEL or decode.UNREADABLE (a file name that is not UTF-8)
    detail: str
    path: Path | None = None


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
    excluded: list[Excluded] = field(default_factory=list)  # listed in items.csv with a problem


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

    def is_input(self, path: str | Path) -> bool:
        """Whether the existing file ``path`` is read as part of this data set (the labels
        CSV, a PCam file, an image in a folder a split is listed from), under any name."""
        p = Path(path)
        if not p.is_file():
            return False
        index_files = [self.root / KAGGLE_LABELS] if self.kind == "kaggle" else []
        for arg in self._splits.values():
            if isinstance(arg, tuple):  # PCam (x, y) files
                index_files += [f for f in arg if f is not None]
        if any(_same_file(p, f) for f in index_files):
            return True
        if p.suffix.lower() not in image_extensions():
            return False
        return any(_same_file(p.parent, folder) for folder in self._image_folders())

    def _image_folders(self) -> list[Path]:
        if self.kind == "kaggle":
            return [self.root / s for s in self._splits]
        if self.kind == "folder":
            return [
                f / c
                for f in self._splits.values()
                if isinstance(f, Path)
                for c in ("", *CLASS_DIRS)
            ]
        return []

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
        if root.is_symlink():
            raise DataError(f"{root}: symbolic link to nothing (dangling, or a loop)")
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
    entries = _listdir(root)
    pcam_splits = sorted(
        {m["split"] for p in entries if (m := PCAM_RE.match(p.name)) and m["xy"] == "x"}
    )
    if pcam_splits:
        return Layout("pcam-h5", root, {s: _pcam_pair(root, s) for s in pcam_splits})
    if _is_class_folder(root):
        return Layout("folder", root, {root.name: root})
    subs = sorted(p for p in entries if p.is_dir() and _is_class_folder(p))
    if subs:
        return Layout("folder", root, {p.name: p for p in subs})
    if any(p.suffix.lower() in image_extensions() for p in entries if p.is_file()):
        return Layout("folder", root, {root.name: root})
    raise DataError(
        f"{root}: no known layout (expected Kaggle train/ + {KAGGLE_LABELS}, PCam "
        "camelyonpatch_level_2_split_*_x.h5, class folders 0/ and 1/, or a folder of images)"
    )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _listdir(folder: Path) -> list[Path]:
    """The entries of ``folder`` (one level, never following links into sub-folders)."""
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        raise DataError(f"{folder}: cannot list folder ({exc.strerror or exc})") from None


def _has_tif(folder: Path) -> bool:
    return any(p.suffix.lower() in (".tif", ".tiff") for p in _listdir(folder))


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
    """Image files (by extension) directly in ``folder``, names not valid UTF-8 included."""
    exts = image_extensions()
    try:
        return [p for p in _listdir(folder) if p.suffix.lower() in exts and not p.is_dir()]
    except OSError as exc:
        raise DataError(f"{folder}: cannot list folder ({exc.strerror or exc})") from None


def printable(name: str) -> str:
    """``name`` with bytes that are not UTF-8 (kept by Python as surrogates) shown as ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _good_name(path: Path) -> bool:
    return printable(path.name) == path.name


def _split_names(paths: list[Path], root: Path) -> tuple[list[Path], list[Excluded]]:
    """Files with usable names, and the others (not UTF-8) as exclusions named printably."""
    good = [p for p in paths if _good_name(p)]
    bad = [
        Excluded(
            printable(p.stem),
            printable(_rel(p, root)),
            UNREADABLE,
            "file name is not valid UTF-8 (rename the file)",
        )
        for p in paths
        if not _good_name(p)
    ]
    return good, bad


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _finding(kind: str, names: list[str], description: str) -> Finding:
    return Finding(kind, len(names), [printable(n) for n in names[:10]], description)


def _dedupe(items: list[Item], root: Path) -> tuple[list[Item], list[Finding], list[Excluded]]:
    """Drop every item whose id occurs more than once: we cannot tell which copy is right."""
    counts = Counter(it.id for it in items)
    dup = sorted(i for i, c in counts.items() if c > 1)
    if not dup:
        return items, [], []
    dup_set = set(dup)
    kept = [it for it in items if it.id not in dup_set]
    excluded = [
        Excluded(
            it.id,
            _rel(it.path, root),
            DUPLICATE_ID,
            f"{counts[it.id]} files named {it.id}.*",
            it.path,
        )
        for it in items
        if it.id in dup_set and it.path is not None
    ]
    finding = _finding(DUPLICATE_ID, dup, "ids listed more than once (all copies excluded)")
    return kept, [finding], excluded


def _read_labels(csv: Path) -> tuple[list[str], list[str]]:
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


def _list_kaggle(root: Path, split: str) -> Listing:
    paths, excluded = _split_names(_image_files(root / split), root)
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for p in paths:
        by_stem[p.stem].append(p)
    files = {stem: ps[0] for stem, ps in by_stem.items() if len(ps) == 1}
    clash = sorted(stem for stem, ps in by_stem.items() if len(ps) > 1)
    findings: list[Finding] = []
    if clash:
        findings.append(
            _finding(DUPLICATE_ID, clash, "file names differing only in extension (all excluded)")
        )
        excluded += [
            Excluded(s, _rel(p, root), DUPLICATE_ID, f"{len(by_stem[s])} files named {s}.*", p)
            for s in clash
            for p in by_stem[s]
        ]
    if split != "train":
        items = [Item(i, None, p) for i, p in sorted(files.items())]
        return Listing("kaggle", split, root, items, findings, labelled=False, excluded=excluded)
    ids, raw_labels = _read_labels(root / KAGGLE_LABELS)
    counts = Counter(ids)
    dup = sorted(i for i, c in counts.items() if c > 1)
    if dup:
        findings.append(
            _finding(DUPLICATE_ID, dup, "ids listed more than once (all rows excluded)")
        )
    bad = [f"{i} (label {lab!r})" for i, lab in zip(ids, raw_labels) if lab not in ("0", "1")]
    if bad:
        findings.append(_finding(BAD_LABEL, bad, "labels outside {0, 1} (excluded)"))
    # Ids are only looked up among the files found in the split folder, so an id such as
    # "../x" or "/etc/passwd" can never name a file outside it: it is simply missing.
    missing = sorted(i for i in counts if i not in by_stem)
    if missing:
        findings.append(
            _finding(MISSING_FILE, missing, f"ids in {KAGGLE_LABELS} with no image file")
        )
    unlabelled = sorted(files[i].name for i in files if i not in counts)
    if unlabelled:
        findings.append(
            _finding(UNLABELLED_FILE, unlabelled, f"files in train/ not in {KAGGLE_LABELS}")
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
                excluded.append(Excluded(i, _rel(files[i], root), DUPLICATE_ID, detail, files[i]))
        elif lab not in ("0", "1"):
            excluded.append(
                Excluded(i, _rel(files[i], root), BAD_LABEL, f"label {lab!r}", files[i])
            )
        else:
            items.append(Item(i, int(lab), files[i]))
    return Listing("kaggle", split, root, items, findings, excluded=excluded)


def _list_folder(folder: Path, split: str) -> Listing:
    if not _is_class_folder(folder):
        paths, excluded = _split_names(_image_files(folder), folder)
        kept, findings, dup = _dedupe([Item(p.stem, None, p) for p in paths], folder)
        return Listing(
            "folder", split, folder, kept, findings, labelled=False, excluded=excluded + dup
        )
    items: list[Item] = []
    excluded = []
    for c in CLASS_DIRS:
        if (folder / c).is_dir():
            paths, bad_names = _split_names(_image_files(folder / c), folder)
            items += [Item(p.stem, int(c), p) for p in paths]
            excluded += bad_names
    findings = []
    stray = sorted(p.name for p in _image_files(folder))
    if stray:
        findings.append(
            _finding(UNLABELLED_FILE, stray, "images outside the class folders 0/ and 1/")
        )
    others = sorted(
        p.name + "/" for p in _listdir(folder) if p.is_dir() and p.name not in CLASS_DIRS
    )
    if others:
        findings.append(_finding(BAD_LABEL, others, "folders other than 0/ and 1/ (not read)"))
    kept, dup_findings, dup = _dedupe(items, folder)
    return Listing("folder", split, folder, kept, findings + dup_findings, excluded=excluded + dup)


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
