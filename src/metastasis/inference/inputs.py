"""What a notebook hands a `Predictor`, turned into 96x96 RGB uint8 patches.

Three kinds of input, each read the way the CLI reads it:

* arrays: one patch (96 x 96 x 3) or a batch (N x 96 x 96 x 3) of uint8 RGB;
* image files: one path or a list of paths, each decoded by `data.decode.decode_file`;
* a data folder (any layout `metastasis check` knows: Kaggle, PCam HDF5, class folders, a flat
  folder of images) or a PCam ``.h5`` file, read through its cache like `metastasis predict`.

A patch that is not 96x96 is refused, as the CLI refuses it (a wrong-sized file is left out as
``wrong_size``; a wrong-sized array stops the call), unless ``resize=True`` asks to resize it
to 96x96 (Pillow's bilinear filter, antialiased when shrinking). Nothing else is ever
converted: greyscale, RGBA, 16-bit or float input is refused, never quietly turned into RGB.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pandas as pd
import torch
from PIL import Image

from metastasis.data.cache import CachedSplit, open_split
from metastasis.data.decode import (
    ACCEPTED_FORMATS,
    PATCH_SHAPE,
    PATCH_SIZE,
    UNREADABLE,
    WRONG_MODE,
    WRONG_SIZE,
    decode_file,
)
from metastasis.data.layouts import open_layout
from metastasis.errors import DataError, first_line

PathLike: TypeAlias = "str | Path"
Inputs: TypeAlias = "np.ndarray | torch.Tensor | str | Path | Sequence[str | Path]"
EXCLUDED_COLUMNS = ("id", "source", "problem", "detail")


@dataclass
class Patches:
    """Patches read from files: ids, pixels and (for labelled data) the truth; what was left
    out is in ``excluded`` (columns id, source, problem, detail, as in ``excluded.csv``)."""

    ids: np.ndarray
    images: np.ndarray  # N x 96 x 96 x 3 uint8
    truth: np.ndarray | None = None
    excluded: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=EXCLUDED_COLUMNS))


def is_array(inputs: object) -> bool:
    return isinstance(inputs, (np.ndarray, torch.Tensor))


def as_patch_batch(images: np.ndarray | torch.Tensor, resize: bool = False) -> torch.Tensor:
    """N x 96 x 96 x 3 uint8 (a single H x W x 3 patch becomes a batch of one).

    Raises `DataError` for another dtype or layout, and for another size unless ``resize``.
    """
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise DataError(f"patches: expected N x 96 x 96 x 3 RGB, got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise DataError(f"patches: expected uint8 pixels (0-255), got {x.dtype}; never converted")
    h, w = int(x.shape[1]), int(x.shape[2])
    if (h, w) == (PATCH_SIZE, PATCH_SIZE):
        return x
    if not resize:
        raise DataError(
            f"patches: {w}x{h}, expected {PATCH_SIZE}x{PATCH_SIZE} "
            "(pass resize=True to resize them)"
        )
    return torch.from_numpy(np.stack([resize_patch(a) for a in x.cpu().numpy()]))


def resize_patch(pixels: np.ndarray) -> np.ndarray:
    """One H x W x 3 uint8 patch resized to 96 x 96 (Pillow bilinear, antialiased)."""
    image = Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")
    return np.asarray(image.resize((PATCH_SIZE, PATCH_SIZE), Image.Resampling.BILINEAR))


def decode_resized(path: Path) -> tuple[np.ndarray | None, str | None, str]:
    """`decode_file`, but an 8-bit RGB image of another size is resized to 96x96.

    Every other refusal of `decode_file` stands (unreadable, wrong mode, decompression bomb).
    """
    pixels, problem, detail = decode_file(path)
    if problem != WRONG_SIZE or "refused unread" in detail:
        return pixels, problem, detail
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=ACCEPTED_FORMATS) as im:
                if im.mode != "RGB":
                    return None, WRONG_MODE, f"mode {im.mode}, expected 8-bit RGB"
                im.load()
                arr = np.asarray(im)
    except Exception as exc:  # as in decode_file: a file that fails is unusable, never a crash
        return None, UNREADABLE, first_line(exc, with_type=True)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        return None, WRONG_MODE, f"decoded as {arr.shape} {arr.dtype}, expected 8-bit RGB"
    return resize_patch(arr), None, ""


def read_files(paths: Sequence[PathLike], resize: bool = False) -> Patches:
    """Decode image files; unusable ones are left out and listed. Ids are the file names
    without their extension (as the layouts name patches)."""
    decode = decode_resized if resize else decode_file
    ids, images, excluded = [], [], []
    for p in map(Path, paths):
        pixels, problem, detail = decode(p)
        if pixels is None:
            excluded.append((p.stem, str(p), problem, detail))
        else:
            ids.append(p.stem)
            images.append(pixels)
    stacked = np.stack(images) if images else np.zeros((0, *PATCH_SHAPE), np.uint8)
    return Patches(
        np.array(ids, dtype=object),
        stacked,
        excluded=pd.DataFrame(excluded, columns=list(EXCLUDED_COLUMNS)),
    )


def open_folder(
    path: PathLike, split: str | None, cache_dir: PathLike | None, progress: bool
) -> CachedSplit:
    """The cached split of a data folder or PCam file, as `metastasis predict` opens it
    (``split`` defaults to ``test`` where there is one, else the only split)."""
    return open_split(path, split, ("test",), Path(cache_dir) if cache_dir else None, progress)


def resized_rows(cached: CachedSplit, path: PathLike) -> tuple[np.ndarray, Patches]:
    """The rows of ``cached`` refused only for their size, decoded again and resized to 96x96:
    their row numbers and patches (those that still cannot be used are in ``excluded``)."""
    rows = np.flatnonzero(cached.problems == WRONG_SIZE)
    files = {}
    if len(rows):
        files = {it.id: it.path for it in open_layout(path).listing(cached.meta["split"]).items}
    keep, images, excluded = [], [], []
    for i in rows:
        source = files.get(cached.ids[i])
        pixels, problem, detail = decode_resized(source) if source else (None, WRONG_SIZE, "")
        if pixels is None:
            excluded.append((cached.ids[i], cached.sources[i], problem, detail))
        else:
            keep.append(i)
            images.append(pixels)
    idx = np.array(keep, dtype=np.int64)
    return idx, Patches(
        cached.ids[idx],
        np.stack(images) if images else np.zeros((0, *PATCH_SHAPE), np.uint8),
        cached.labels[idx].astype(np.int64) if cached.labelled else None,
        pd.DataFrame(excluded, columns=list(EXCLUDED_COLUMNS)),
    )
