"""Folder per class: ``DIR/0/*``, ``DIR/1/*`` (TIFF, PNG, JPEG, BMP or WebP files, see decode.py;
other image files are listed, then refused by name); a flat folder of images is one unlabelled
split. A folder is listed one level deep, so a symbolic-link cycle cannot hang it.
"""

from __future__ import annotations

from pathlib import Path

from metastasis.data.listing import (
    BAD_LABEL,
    UNLABELLED_FILE,
    Item,
    Listing,
    dedupe,
    finding,
    image_files,
    listdir,
    split_names,
)

CLASS_DIRS = ("0", "1")


def is_class_folder(folder: Path) -> bool:
    return any((folder / c).is_dir() for c in CLASS_DIRS)


def list_folder(folder: Path, split: str) -> Listing:
    if not is_class_folder(folder):
        paths, excluded = split_names(image_files(folder), folder)
        kept, findings, dup = dedupe([Item(p.stem, None, p) for p in paths], folder)
        return Listing(
            "folder", split, folder, kept, findings, labelled=False, excluded=excluded + dup
        )
    items: list[Item] = []
    excluded = []
    for c in CLASS_DIRS:
        if (folder / c).is_dir():
            paths, bad_names = split_names(image_files(folder / c), folder)
            items += [Item(p.stem, int(c), p) for p in paths]
            excluded += bad_names
    findings = []
    stray = sorted(p.name for p in image_files(folder))
    if stray:
        findings.append(
            finding(UNLABELLED_FILE, stray, "images outside the class folders 0/ and 1/")
        )
    others = sorted(
        p.name + "/" for p in listdir(folder) if p.is_dir() and p.name not in CLASS_DIRS
    )
    if others:
        findings.append(finding(BAD_LABEL, others, "folders other than 0/ and 1/ (not read)"))
    kept, dup_findings, dup = dedupe(items, folder)
    return Listing("folder", split, folder, kept, findings + dup_findings, excluded=excluded + dup)
