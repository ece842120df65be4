"""Synthetic PCam-like H&E patches: the demo's default data and the tests' data.

Each 96x96 RGB patch is painted in optical density (Beer-Lambert) from a haematoxylin map
(purple nuclei) and an eosin map (pink stroma, cytoplasm), then blurred, given noise and turned
into uint8 RGB. Normal tissue is lymphoid (many small dark lymphocytes), fibrous stroma (wavy
pink fibres, sparse elongated nuclei) or fat (white cells with thin pink walls), sometimes
with empty white areas. Label 1 means tumour cells (large, crowded, pleomorphic, vesicular
nuclei with nucleoli in pale purple cytoplasm) lie in the central 32x32 region; half of the
label-0 patches hold tumour cells only outside it, so the label depends on the centre, as in
PCam. ``make_tumour_masks`` gives the tumour-nucleus pixels as ground truth.

Patch ``i`` depends only on ``(seed, i, positive_fraction)``: a longer run with the same seed
starts with the same patches. Writers for the three layouts the readers know (folder per class,
Kaggle, PCam HDF5) stream the patches in chunks, so memory stays flat for any ``n``.
The painting itself is in ``metastasis.data.synthetic_render``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from metastasis.data.decode import PATCH_SIZE
from metastasis.data.synthetic_render import render
from metastasis.errors import OutputError
from metastasis.io import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    dir_mode,
    os_problem,
    output_dir,
)

CENTRE = slice(32, 64)  # label 1 = tumour cells in images[:, CENTRE, CENTRE]
VALID_SEED_OFFSET = 1_000_003  # valid/test splits draw from other seed streams than train
TEST_SEED_OFFSET = 2_000_029
FOLDER_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "tif": "TIFF", "tiff": "TIFF"}
DEMO_META = "synthetic.json"  # written into every data set made here: what says it is drawn
SYNTHETIC_WARNING = "trained on synthetic drawings, not tissue: not for real slides"

_BLOCK = 32  # patches rendered together: work arrays stay small enough for the CPU caches


# ----------------------------------------------------------------------------- public API


def make_patches(
    n: int, seed: int = 0, positive_fraction: float = 0.4
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)``: ``(n, 96, 96, 3)`` uint8 and ``(n,)`` int64."""
    _check_args(n, seed, positive_fraction)
    images = np.empty((n, PATCH_SIZE, PATCH_SIZE, 3), np.uint8)
    labels = np.empty(n, np.int64)
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        images[start:stop], labels[start:stop], _ = render(seed, start, stop, positive_fraction)
    return images, labels


def make_tumour_masks(n: int, seed: int = 0, positive_fraction: float = 0.4) -> np.ndarray:
    """Return ``(n, 96, 96)`` bool masks of the tumour nuclei in ``make_patches(n, seed, ...)``.

    Ground truth for checks such as "does the saliency map point at the tumour"; a patch is
    labelled 1 exactly when its mask touches the central 32x32 region.
    """
    _check_args(n, seed, positive_fraction)
    out = np.empty((n, PATCH_SIZE, PATCH_SIZE), bool)
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        out[start:stop] = render(seed, start, stop, positive_fraction, masks=True)[2]
    return out


def iter_patches(
    n: int, seed: int = 0, positive_fraction: float = 0.4, chunk: int = 1024
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(images, labels)`` chunks of at most ``chunk`` patches, in order (flat memory)."""
    _check_args(n, seed, positive_fraction)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        images = np.empty((stop - start, PATCH_SIZE, PATCH_SIZE, 3), np.uint8)
        labels = np.empty(stop - start, np.int64)
        for lo in range(start, stop, _BLOCK):
            hi = min(stop, lo + _BLOCK)
            images[lo - start : hi - start], labels[lo - start : hi - start], _ = render(
                seed, lo, hi, positive_fraction
            )
        yield images, labels


def write_folder_dataset(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int = 0,
    positive_fraction: float = 0.4,
    fmt: str = "png",
) -> Path:
    """Write ``out_dir/{0,1}/synth_{seed}_{i:07d}.{fmt}``; the folder appears only when complete."""
    ext = fmt.lower().lstrip(".")
    if ext not in FOLDER_FORMATS:
        raise ValueError(f"fmt must be one of {sorted(FOLDER_FORMATS)}, got {fmt!r}")
    with _staged_dir(out_dir) as tmp:
        _write_class_folders(tmp, n, seed, positive_fraction, ext)
        _mark(tmp, "folder", n=n, seed=seed)
    return Path(out_dir)


def write_demo_dataset(
    out_dir: str | os.PathLike[str], n_train: int = 2000, n_valid: int = 500, seed: int = 0
) -> Path:
    """Write ``out_dir/{train,valid}/{0,1}/*.png``, or return ``out_dir`` if it already holds them.

    The valid split draws from the seed stream ``seed + VALID_SEED_OFFSET``, so it shares no
    patch with train. ``synthetic.json`` (the parameters) is written last; a folder holding
    it with the same parameters is reused as is.
    """
    out = Path(out_dir)
    params = {"kind": "demo", "n_train": n_train, "n_valid": n_valid, "seed": seed,
              "positive_fraction": 0.4, "format": "png"}  # fmt: skip
    meta = out / DEMO_META
    if meta.is_file():
        with contextlib.suppress(ValueError, OSError):
            if json.loads(meta.read_text(encoding="utf-8")) == params:
                return out
        raise OutputError(
            f"{out} holds a synthetic demo dataset with other parameters than {params}; "
            "remove it or choose another folder"
        )
    with _staged_dir(out) as tmp:
        _write_class_folders(tmp / "train", n_train, seed, 0.4, "png")
        _write_class_folders(tmp / "valid", n_valid, seed + VALID_SEED_OFFSET, 0.4, "png")
        atomic_write_json(tmp / DEMO_META, params)
    return out


def write_kaggle_dataset(
    out_dir: str | os.PathLike[str],
    n_train: int,
    n_test: int = 0,
    seed: int = 0,
    positive_fraction: float = 0.405,
) -> Path:
    """Write the Kaggle layout: ``train/<id>.tif``, ``train_labels.csv`` (``id,label``),
    unlabelled ``test/<id>.tif`` and ``sample_submission.csv``; ids are 40 hex characters."""
    with _staged_dir(out_dir) as tmp:
        rows = ["id,label"]
        (tmp / "train").mkdir()
        for start, images, labels in _chunks(n_train, seed, positive_fraction):
            for k in range(len(labels)):
                pid = kaggle_id(seed, start + k)
                Image.fromarray(images[k]).save(tmp / "train" / f"{pid}.tif", format="TIFF")
                rows.append(f"{pid},{int(labels[k])}")
        atomic_write_text(tmp / "train_labels.csv", "\n".join(rows) + "\n")
        if n_test > 0:
            (tmp / "test").mkdir()
            sub = ["id,label"]
            test_seed = seed + TEST_SEED_OFFSET
            for start, images, _ in _chunks(n_test, test_seed, positive_fraction):
                for k in range(len(images)):
                    pid = kaggle_id(seed, start + k, split="test")
                    Image.fromarray(images[k]).save(tmp / "test" / f"{pid}.tif", format="TIFF")
                    sub.append(f"{pid},0")
            atomic_write_text(tmp / "sample_submission.csv", "\n".join(sub) + "\n")
        _mark(tmp, "kaggle", n=n_train, seed=seed)
    return Path(out_dir)


def kaggle_id(seed: int, i: int, split: str = "train") -> str:
    """The 40-hex-character id of synthetic Kaggle patch ``i`` (sha1 of seed, split and index)."""
    key = f"{seed}-{i}" if split == "train" else f"{seed}-{split}-{i}"
    return hashlib.sha1(key.encode()).hexdigest()


def write_pcam_h5(
    out_dir: str | os.PathLike[str],
    split: str,
    n: int,
    seed: int = 0,
    gzip_files: bool = False,
) -> tuple[Path, Path]:
    """Write ``camelyonpatch_level_2_split_{split}_{x,y}.h5`` (or ``.h5.gz``) into ``out_dir``.

    ``x``: ``(n, 96, 96, 3)`` uint8, ``y``: ``(n, 1, 1, 1)`` uint8, as in the real PCam files;
    classes balanced as in PCam. "valid" and "test" draw from other seed streams than "train".
    With ``gzip_files`` only the ``.h5.gz`` files (as distributed on Zenodo) are written.
    """
    offsets = {"train": 0, "valid": VALID_SEED_OFFSET, "test": TEST_SEED_OFFSET}
    if split not in offsets:
        raise ValueError(f"split must be one of {sorted(offsets)}, got {split!r}")
    _check_args(n, seed, 0.5)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"camelyonpatch_level_2_split_{split}"
    suffix = ".h5.gz" if gzip_files else ".h5"
    x_path, y_path = out / f"{stem}_x{suffix}", out / f"{stem}_y{suffix}"
    with atomic_path(x_path) as x_tmp, atomic_path(y_path) as y_tmp:
        if gzip_files:
            with _gzipped(x_tmp) as x_h5, _gzipped(y_tmp) as y_h5:
                _write_h5_pair(x_h5, y_h5, n, seed + offsets[split])
        else:
            _write_h5_pair(x_tmp, y_tmp, n, seed + offsets[split])
    _mark(out, "pcam", seed=seed)
    return x_path, y_path


def is_synthetic(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (a data set, one of its splits or files) was written here: its folder,
    or one of the two above it, holds the ``DEMO_META`` marker."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    for candidate in (folder, *list(folder.parents)[:2]):
        try:
            meta = json.loads((candidate / DEMO_META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and (meta.get("synthetic") is True or "kind" in meta):
            return True
    return False


def _mark(folder: Path, kind: str, **params: object) -> None:
    """The marker that says a data set is synthetic drawings (read by ``is_synthetic``)."""
    atomic_write_json(folder / DEMO_META, {"kind": kind, "synthetic": True, **params})


# ----------------------------------------------------------------------------- writers


def _check_args(n: int, seed: int, positive_fraction: float) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")


def _chunks(
    n: int, seed: int, positive_fraction: float
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    start = 0
    for images, labels in iter_patches(n, seed, positive_fraction, chunk=512):
        yield start, images, labels
        start += len(labels)


@contextlib.contextmanager
def _staged_dir(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``out_dir``; rename it to ``out_dir`` on success."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(
            f"{out} already exists and is not empty; remove it or choose another folder"
        )
    output_dir(out.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise OutputError(f"{out}: cannot write: {os_problem(exc)}") from None
    try:
        yield tmp
        os.chmod(tmp, dir_mode())  # mkdtemp made it 0700
        if out.exists():
            out.rmdir()  # empty (checked above); os.replace cannot replace a directory
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"{out}: cannot write: {os_problem(exc)}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_class_folders(root: Path, n: int, seed: int, positive_fraction: float, ext: str) -> None:
    for name in ("0", "1"):
        (root / name).mkdir(parents=True)
    fmt = FOLDER_FORMATS[ext]
    options = {"quality": 95} if fmt == "JPEG" else {}
    for start, images, labels in _chunks(n, seed, positive_fraction):
        for k in range(len(labels)):
            path = root / str(int(labels[k])) / f"synth_{seed}_{start + k:07d}.{ext}"
            Image.fromarray(images[k]).save(path, format=fmt, **options)


@contextlib.contextmanager
def _gzipped(gz_path: Path) -> Iterator[Path]:
    """Yield a temporary .h5 path; on success gzip it into ``gz_path`` and delete it."""
    fd, name = tempfile.mkstemp(prefix=f".{gz_path.name}.", suffix=".h5", dir=gz_path.parent)
    os.close(fd)
    h5_path = Path(name)
    try:
        yield h5_path
        with (
            open(h5_path, "rb") as src,
            atomic_path(gz_path) as tmp,
            gzip.open(tmp, "wb", compresslevel=1) as dst,
        ):
            shutil.copyfileobj(src, dst, length=1 << 20)
    finally:
        h5_path.unlink(missing_ok=True)


def _write_h5_pair(x_path: Path, y_path: Path, n: int, seed: int) -> None:
    import h5py  # lazy: only the PCam writer needs it

    with h5py.File(x_path, "w") as fx, h5py.File(y_path, "w") as fy:
        x = fx.create_dataset(
            "x", (n, PATCH_SIZE, PATCH_SIZE, 3), np.uint8,
            chunks=(1, PATCH_SIZE, PATCH_SIZE, 3) if n else None,
            compression="gzip", compression_opts=1,
        )  # fmt: skip
        y = fy.create_dataset("y", (n, 1, 1, 1), np.uint8)
        for start, images, labels in _chunks(n, seed, 0.5):
            x[start : start + len(labels)] = images
            y[start : start + len(labels), 0, 0, 0] = labels.astype(np.uint8)
