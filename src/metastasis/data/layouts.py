"""Find out which of the three layouts a path holds; each layout's module lists its items
(``kaggle.py``, ``folder.py``, ``pcam_h5.py``, into a ``listing.Listing``), without decoding pixels.

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
from pathlib import Path

from metastasis.data.decode import image_extensions
from metastasis.data.folder import CLASS_DIRS, is_class_folder, list_folder
from metastasis.data.kaggle import KAGGLE_LABELS, has_tif, list_kaggle
from metastasis.data.listing import Listing, listdir
from metastasis.data.pcam_h5 import PCAM_RE, list_pcam, pcam_pair
from metastasis.errors import DataError

__all__ = ["Layout", "open_layout"]


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
            return list_kaggle(self.root, split)
        if self.kind == "pcam-h5":
            assert isinstance(arg, tuple)
            return list_pcam(self.root, split, arg)
        assert isinstance(arg, Path)
        return list_folder(arg, split)

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
        files = pcam_pair(root.parent, m["split"])
        return Layout("pcam-h5", root.parent, {m["split"]: files})
    if not root.is_dir():
        raise DataError(f"{root}: not a regular file or folder")
    if (root / KAGGLE_LABELS).is_file() or ((root / "train").is_dir() and has_tif(root / "train")):
        splits: dict[str, object] = {}
        if (root / "train").is_dir():
            splits["train"] = None
        if (root / "test").is_dir():
            splits["test"] = None
        if "train" in splits and not (root / KAGGLE_LABELS).is_file():
            raise DataError(f"{root}: Kaggle layout without {KAGGLE_LABELS}")
        return Layout("kaggle", root, splits)
    entries = listdir(root)
    pcam_splits = sorted(
        {m["split"] for p in entries if (m := PCAM_RE.match(p.name)) and m["xy"] == "x"}
    )
    if pcam_splits:
        return Layout("pcam-h5", root, {s: pcam_pair(root, s) for s in pcam_splits})
    if is_class_folder(root):
        return Layout("folder", root, {root.name: root})
    subs = sorted(p for p in entries if p.is_dir() and is_class_folder(p))
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
