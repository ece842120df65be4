"""PCam's HDF5 files, read under one policy: a data file never makes the tool open another file.

* Only regular files are opened (a FIFO named ``.h5`` would block); a ``.h5.gz`` is
  decompressed once, streaming, into the cache folder (`decompressed`).
* Only plain datasets are read (`_dataset`): external and soft links, data kept in external
  files (any file, resolved against the current folder, or a FIFO) and virtual datasets are
  refused with one line.
* Every row a dataset declares must be stored (`_require_stored`): a few-KB file declaring
  millions of patches would otherwise become a cache of zeros filling the disk.
* `open_pcam` opens an ``x`` / ``y`` pair with these checks and the shape checks (``x`` N x 96 x
  96 x 3 uint8, ``y`` N integer labels: a float label is never rounded), so `data.cache` only
  copies rows (`read_rows`). Every failure is one `DataError` naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from metastasis.data.decode import PATCH_SHAPE
from metastasis.data.listing import Listing
from metastasis.errors import DataError, first_line
from metastasis.io import atomic_path, regular_file


@contextmanager
def open_pcam(
    x_path: Path, y_path: Path | None, cache_root: Path
) -> Iterator[tuple[Any, np.ndarray]]:
    """The ``x`` dataset (open while the block runs) and the labels (-1 without a ``y`` file),
    both checked."""
    with open_h5(x_path, cache_root) as fx:
        x = _dataset(fx, "x", x_path)
        if x.ndim != 4 or tuple(x.shape[1:]) != PATCH_SHAPE or x.dtype != np.uint8:
            raise DataError(
                f"{x_path}: dataset 'x' is {x.shape} {x.dtype}, expected N x 96 x 96 x 3 uint8"
            )
        n = int(x.shape[0])
        _require_stored(x, x_path)
        y_flat = np.full(n, -1, dtype=np.int64)
        if y_path is not None:
            with open_h5(y_path, cache_root) as fy:
                y = _dataset(fy, "y", y_path)
                if y.ndim == 0 or y.shape[0] != n or int(np.prod(y.shape[1:])) != 1:
                    raise DataError(
                        f"{y_path}: dataset 'y' is {y.shape}, expected {n} x 1 x 1 x 1 "
                        f"to match {x_path.name}"
                    )
                if y.dtype.kind not in "biu":  # a float label is never rounded into a class
                    raise DataError(
                        f"{y_path}: dataset 'y' is {y.dtype}, expected integer labels 0 and 1"
                    )
                _require_stored(y, y_path)
                y_flat = read_rows(y, 0, n, y_path).reshape(n).astype(np.int64)
        yield x, y_flat


def decompressed(path: Path, cache_root: Path) -> Path:
    """A ``.h5.gz`` file decompressed (streaming, once) into the cache folder."""
    if path.suffix != ".gz":
        return path
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    out = cache_root / "h5" / f"{path.name[:-3]}.{key[:16]}"
    if out.is_file():
        return out
    regular_file(path)
    with atomic_path(out) as tmp, gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
        while True:  # reading errors are the data's; writing errors become OutputError
            try:
                block = src.read(16 << 20)
            except (OSError, EOFError, zlib.error) as exc:
                raise DataError(f"{path}: cannot decompress: {first_line(exc)}") from None
            if not block:
                break
            dst.write(block)
    return out


@contextmanager
def open_h5(path: Path, cache_root: Path) -> Iterator[Any]:
    """An HDF5 file (decompressing a .h5.gz first); any failure is one DataError naming it."""
    import h5py

    plain = decompressed(path, cache_root)
    regular_file(plain)
    try:
        f = h5py.File(plain, "r")
    except Exception as exc:  # h5py reports a damaged file in several exception types
        raise DataError(f"{path}: not a readable HDF5 file ({first_line(exc)})") from None
    try:
        yield f
    finally:
        f.close()


def _dataset(f: Any, name: str, path: Path) -> Any:
    """The plain dataset ``name``: never through a link, never stored in another file."""
    import h5py

    try:
        link = f.get(name, getlink=True)
        if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
            kind = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
            raise DataError(
                f"{path}: {name!r} is {kind} to {_link_target(link)}; refused: "
                "a data file must hold its data itself"
            )
        ds = None if link is None else f.get(name)
        if isinstance(ds, h5py.Dataset):
            _ = ds.shape, ds.dtype  # damaged metadata fails here, not later
            if ds.is_virtual:
                raise DataError(
                    f"{path}: {name!r} is a virtual dataset (made of other files); refused: "
                    "a data file must hold its data itself"
                )
            if ds.id.get_create_plist().get_external_count():
                raise DataError(
                    f"{path}: {name!r} keeps its data in external files; refused: "
                    "a data file must hold its data itself"
                )
    except Exception as exc:  # as in open_h5; our own refusals pass through
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: dataset {name!r} unreadable ({first_line(exc)})") from None
    if ds is None:
        raise DataError(f"{path}: no dataset {name!r} (has {', '.join(f.keys()) or 'none'})")
    if not isinstance(ds, h5py.Dataset):
        raise DataError(f"{path}: {name!r} is a {type(ds).__name__}, expected a dataset")
    return ds


def _link_target(link: Any) -> str:
    target = getattr(link, "path", "")
    where = getattr(link, "filename", None)
    return f"{where}:{target}" if where else str(target)


def _require_stored(ds: Any, path: Path) -> None:
    """Refuse a dataset that declares more data than the file stores (read as fill values,
    a sparse declaration of millions of patches would make a cache of hundreds of GB)."""
    import h5py

    try:
        layout = ds.id.get_create_plist().get_layout()
        if layout == h5py.h5d.COMPACT or ds.size == 0:
            return
        if layout == h5py.h5d.CHUNKED:
            chunks = ds.chunks
            needed = int(np.prod([-(-s // c) for s, c in zip(ds.shape, chunks)]))
            stored = int(ds.id.get_num_chunks())
            if stored < needed:
                raise DataError(
                    f"{path}: dataset {ds.name.lstrip('/')!r} declares {ds.shape[0]:,} rows "
                    f"but stores {stored:,} of its {needed:,} chunks; refused (incomplete file)"
                )
            return
        stored = int(ds.id.get_storage_size())
        if stored < ds.size * ds.dtype.itemsize:
            raise DataError(
                f"{path}: dataset {ds.name.lstrip('/')!r} declares {ds.shape[0]:,} rows "
                f"({ds.size * ds.dtype.itemsize:,} bytes) but stores {stored:,} bytes; "
                "refused (incomplete file)"
            )
    except Exception as exc:  # as in open_h5; our own refusals pass through
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: dataset {ds.name!r} unreadable ({first_line(exc)})") from None


def read_rows(ds: Any, start: int, stop: int, path: Path) -> np.ndarray:
    try:
        return np.asarray(ds[start:stop])
    except Exception as exc:  # as in open_h5
        raise DataError(f"{path}: rows {start}-{stop} unreadable ({first_line(exc)})") from None


PCAM_RE = re.compile(r"^camelyonpatch_level_2_split_(?P<split>\w+?)_(?P<xy>[xy])\.h5(?P<gz>\.gz)?$")


def pcam_pair(folder: Path, split: str) -> tuple[Path, Path | None]:
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


def list_pcam(root: Path, split: str, files: tuple[Path, Path | None]) -> Listing:
    x, y = files
    # Row count and labels are read when the cache is built (they need the decompressed file).
    return Listing(
        "pcam-h5", split, root, [], labelled=y is not None, h5_files=(x,) if y is None else (x, y)
    )
