"""Decode a split once into a contiguous uint8 array on disk; later runs open it at once.

A cache folder ``<root>/<layout>-<split>-<fingerprint>/`` holds:

* ``images.npy``: N x 96 x 96 x 3 uint8, opened as a memory map (page cache, not process memory);
* ``items.csv``: ``id,label,source,problem,detail,digest`` per row (label -1 when unlabelled,
  problem empty for a usable row, digest = hash of the pixels for duplicate detection);
* ``meta.json``: layout, split, source, fingerprint and the index-level findings.

It is built in a hidden temporary folder and renamed into place when complete, so a killed build
is never mistaken for a finished one; the fingerprint (names, sizes and modification times of
the source files, plus the labels) changes whenever the source does. Before a build the disk's
free space is checked and ``images.npy`` is reserved in full, so a disk that fills up is one
error line (never SIGBUS from the memory map, never a cache that looks complete); decoding
workers die with the process that started them.

A PCam HDF5 file is read under one policy (`_open_h5`, `_dataset`): a regular file, plain
datasets only (no external or soft links, no external storage, no virtual datasets: a data file
never makes the tool open another file), and every patch it declares actually stored.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from metastasis.data.decode import PATCH_SHAPE, decode_file, pixel_digest
from metastasis.data.layouts import BAD_LABEL, Finding, Listing, open_layout
from metastasis.errors import DataError, OutputError, first_line
from metastasis.io import (
    atomic_path,
    atomic_write_json,
    dir_mode,
    ensure_free_space,
    os_problem,
    output_dir,
    preallocate,
)
from metastasis.workers import die_with_parent, parent_alive

CACHE_VERSION = 2  # 2: rows excluded by the listing are in items.csv
CHUNK = 512
DUPLICATE_PIXELS = "duplicate_pixels"


def default_cache_root() -> Path:
    env = os.environ.get("METASTASIS_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "metastasis"


class CachedSplit:
    """A decoded split: the dataset interface every command works through."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta: dict[str, Any] = json.loads((path / "meta.json").read_text())
        table = pd.read_csv(path / "items.csv", dtype=str, keep_default_na=False)
        self.ids: np.ndarray = table["id"].to_numpy(dtype=object)
        self.labels: np.ndarray = table["label"].astype(np.int8).to_numpy()
        self.sources: np.ndarray = table["source"].to_numpy(dtype=object)
        self.problems: np.ndarray = table["problem"].to_numpy(dtype=object)
        self.details: np.ndarray = table["detail"].to_numpy(dtype=object)
        self.digests: np.ndarray = table["digest"].to_numpy(dtype=object)
        self._images: np.ndarray | None = None

    @property
    def images(self) -> np.ndarray:
        """N x 96 x 96 x 3 uint8 memory map (rows with a problem are zeros)."""
        if self._images is None:
            self._images = np.load(self.path / "images.npy", mmap_mode="r")
        return self._images

    def __getstate__(self) -> dict[str, Any]:  # memory maps are reopened in each worker
        return {**self.__dict__, "_images": None}

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def name(self) -> str:
        return f"{self.meta['source']} [{self.meta['split']}]"

    @property
    def fingerprint(self) -> str:
        return str(self.meta["fingerprint"])

    @property
    def labelled(self) -> bool:
        return bool(self.meta["labelled"])

    @property
    def ok(self) -> np.ndarray:
        return self.problems == ""

    def usable_indices(self) -> np.ndarray:
        """Rows that decoded into a valid patch (with a valid label, when labelled)."""
        return np.flatnonzero(self.ok)

    def excluded(self) -> pd.DataFrame:
        """Rows left out, with the reason: for the run folder's ``excluded.csv``."""
        bad = ~self.ok
        return pd.DataFrame(
            {
                "id": self.ids[bad],
                "source": self.sources[bad],
                "problem": self.problems[bad],
                "detail": self.details[bad],
            }
        )

    def class_counts(self) -> dict[str, int]:
        labels = self.labels[self.ok]
        if not self.labelled:
            return {"unlabelled": len(labels)}
        return {str(c): int((labels == c).sum()) for c in (0, 1)}

    def findings(self) -> list[Finding]:
        """Index-level findings, then per-image problems, then exact pixel duplicates."""
        out = [Finding(**f) for f in self.meta["findings"]]
        listed = {f.kind for f in out}  # index findings already count their excluded rows
        for kind, count in Counter(p for p in self.problems if p and p not in listed).items():
            rows = np.flatnonzero(self.problems == kind)
            examples = [f"{self.sources[i]} ({self.details[i]})" for i in rows[:10]]
            out.append(Finding(kind, int(count), examples, _DESCRIPTIONS.get(kind, kind)))
        dup = duplicate_groups(self.digests[self.ok], self.sources[self.ok])
        if dup:
            copies = sum(len(g) - 1 for g in dup)
            examples = [" = ".join(g[:3]) + (" ..." if len(g) > 3 else "") for g in dup[:10]]
            out.append(
                Finding(
                    DUPLICATE_PIXELS,
                    copies,
                    examples,
                    f"extra copies of identical pixels ({len(dup)} groups)",
                )
            )
        return out


_DESCRIPTIONS = {
    "unreadable": "unreadable or corrupt images (excluded)",
    "wrong_size": "images not 96x96 (excluded)",
    "wrong_mode": "images not 8-bit RGB, e.g. RGBA, greyscale, 16-bit (excluded)",
    BAD_LABEL: "labels outside {0, 1} (excluded)",
}


def duplicate_groups(digests: np.ndarray, names: np.ndarray) -> list[list[str]]:
    """Groups of names whose pixels hash identically, largest first."""
    groups: dict[str, list[str]] = {}
    for d, n in zip(digests, names):
        groups.setdefault(d, []).append(str(n))
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))


def fingerprint(listing: Listing) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{listing.layout}|{listing.split}|".encode())
    h.update(str(listing.root.resolve()).encode())
    for f in listing.findings:
        h.update(json.dumps(f.to_dict(), sort_keys=True).encode())
    for it in listing.items:
        h.update(f"{it.id}\t{it.label}\t{_stat(it.path)}\n".encode())
    for e in listing.excluded:
        h.update(f"{e.id}\t{e.source}\t{e.kind}\t{e.detail}\n".encode())
    for p in listing.h5_files:
        h.update(f"{p.name}\t{_stat(p)}\n".encode())
    return h.hexdigest()[:20]


def _stat(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        st = path.stat()
    except OSError as exc:
        return f"{path.name}:error:{exc.errno}"
    return f"{path.name}:{st.st_size}:{st.st_mtime_ns}"


def open_cache(
    listing: Listing,
    cache_root: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> CachedSplit:
    """Open the cache of ``listing``, building it first when it does not exist yet."""
    root = Path(cache_root) if cache_root else default_cache_root()
    fp = fingerprint(listing)
    final = root / f"{listing.layout}-{listing.split}-{fp}"
    if (final / "meta.json").is_file():
        return CachedSplit(final)
    output_dir(root, "cache folder")
    _remove_abandoned_builds(root)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-{os.getpid()}-", dir=root))
    except OSError as exc:
        raise OutputError(f"{root}: cannot write the cache here: {os_problem(exc)}") from None
    try:
        if listing.layout == "pcam-h5":
            table = _build_from_h5(listing, tmp, root, progress)
        else:
            table = _build_from_files(listing, tmp, workers, progress)
        table.to_csv(tmp / "items.csv", index=False)
        meta = {
            "version": CACHE_VERSION,
            "layout": listing.layout,
            "split": listing.split,
            "source": str(listing.root),
            "fingerprint": fp,
            "labelled": listing.labelled,
            "n": len(table),
            "findings": [f.to_dict() for f in listing.findings],
        }
        atomic_write_json(tmp / "meta.json", meta)
        os.chmod(tmp, dir_mode())  # mkdtemp made it 0700; a cache is as shareable as a file
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same cache first
            if not (final / "meta.json").is_file():
                raise
    except OSError as exc:
        raise OutputError(f"{final}: cannot write the cache: {os_problem(exc)}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return CachedSplit(final)


def _remove_abandoned_builds(root: Path) -> None:
    """Delete the temporary folders of builds whose process is gone (killed, power cut)."""
    for tmp in root.glob(".*.building-*"):
        pid = tmp.name.rsplit(".building-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _new_images(path: Path, n: int) -> np.memmap:
    """A writable N x 96 x 96 x 3 memory map at ``path`` (in a build folder), its disk space
    checked (the error names the cache folder the user chose) and reserved."""
    needed = n * int(np.prod(PATCH_SHAPE)) + 4096
    ensure_free_space(path.parent.parent, needed, f"the cache of {n:,} patches")
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, *PATCH_SHAPE))
    preallocate(path, path.stat().st_size)  # header + pixels: the file as it is, now reserved
    return images


def _decode_chunk(npy: str, start: int, paths: list[str]) -> list[tuple[str, str, str]]:
    """Decode ``paths`` into rows ``start...`` of the memory-mapped array (runs in a worker)."""
    images = np.load(npy, mmap_mode="r+")
    out = []
    for k, p in enumerate(paths):
        if not parent_alive():  # orphaned where the kernel cannot kill us with the parent
            os._exit(1)
        arr, problem, detail = decode_file(Path(p))
        if arr is None:
            out.append((problem or "unreadable", detail, ""))
        else:
            images[start + k] = arr
            out.append(("", "", pixel_digest(arr)))
    images.flush()
    return out


def _build_from_files(
    listing: Listing, tmp: Path, workers: int | None, progress: bool
) -> pd.DataFrame:
    n = len(listing.items)
    npy = tmp / "images.npy"
    rows_total = n + len(listing.excluded)  # excluded rows stay zeros, after the items
    _new_images(npy, rows_total).flush()
    paths = [str(it.path) for it in listing.items]
    chunks = [(s, paths[s : s + CHUNK]) for s in range(0, n, CHUNK)]
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    results: dict[int, list[tuple[str, str, str]]] = {}
    bar = tqdm(
        total=n, unit="patch", desc=f"caching {listing.split}", disable=not progress, leave=False
    )
    if workers > 1 and n >= 4 * CHUNK:
        # fork (as torch's DataLoader does on Linux): workers only run Pillow and numpy, and
        # unlike spawn it works from scripts without an `if __name__ == "__main__"` guard.
        method = "fork" if "fork" in get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(
            workers,
            mp_context=get_context(method),
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            futures = {pool.submit(_decode_chunk, str(npy), s, ps): s for s, ps in chunks}
            for fut, s in futures.items():
                results[s] = fut.result()
                bar.update(len(results[s]))
    else:
        for s, ps in chunks:
            results[s] = _decode_chunk(str(npy), s, ps)
            bar.update(len(ps))
    bar.close()
    rows = [r for s, _ in chunks for r in results[s]]
    root = listing.root
    ex = listing.excluded
    return pd.DataFrame(
        {
            "id": [it.id for it in listing.items] + [e.id for e in ex],
            "label": [-1 if it.label is None else it.label for it in listing.items]
            + [-1] * len(ex),
            "source": [_relative(it.path, root) for it in listing.items] + [e.source for e in ex],
            "problem": [r[0] for r in rows] + [e.kind for e in ex],
            "detail": [r[1] for r in rows] + [e.detail for e in ex],
            "digest": [r[2] for r in rows] + [""] * len(ex),
        }
    )


def _relative(path: Path | None, root: Path) -> str:
    assert path is not None
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _decompressed(path: Path, cache_root: Path) -> Path:
    """A ``.h5.gz`` file decompressed (streaming, once) into the cache folder."""
    if path.suffix != ".gz":
        return path
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    out = cache_root / "h5" / f"{path.name[:-3]}.{key[:16]}"
    if out.is_file():
        return out
    _regular_file(path)
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


def _regular_file(path: Path) -> None:
    """A FIFO or device would block or never end: only regular files are opened."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {os_problem(exc)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path}: not a regular file")


def _build_from_h5(listing: Listing, tmp: Path, cache_root: Path, progress: bool) -> pd.DataFrame:
    x_path = listing.h5_files[0]
    y_path = listing.h5_files[1] if len(listing.h5_files) > 1 else None
    with _open_h5(x_path, cache_root) as fx:
        x = _dataset(fx, "x", x_path)
        if x.ndim != 4 or tuple(x.shape[1:]) != PATCH_SHAPE or x.dtype != np.uint8:
            raise DataError(
                f"{x_path}: dataset 'x' is {x.shape} {x.dtype}, expected N x 96 x 96 x 3 uint8"
            )
        n = int(x.shape[0])
        _require_stored(x, x_path)
        y_flat = np.full(n, -1, dtype=np.int64)
        if y_path is not None:
            with _open_h5(y_path, cache_root) as fy:
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
                y_flat = _read(y, 0, n, y_path).reshape(n).astype(np.int64)
        images = _new_images(tmp / "images.npy", n)
        digests = []
        block = 2048
        with tqdm(
            total=n,
            unit="patch",
            desc=f"caching {listing.split}",
            disable=not progress,
            leave=False,
        ) as bar:
            for s in range(0, n, block):
                arr = _read(x, s, min(s + block, n), x_path)
                images[s : s + len(arr)] = arr
                digests += [pixel_digest(a) for a in arr]
                bar.update(len(arr))
        images.flush()
    bad = ~np.isin(y_flat, (0, 1)) if y_path is not None else np.zeros(n, bool)
    return pd.DataFrame(
        {
            "id": [f"{listing.split}_{i:06d}" for i in range(n)],
            "label": np.where(bad, -1, y_flat),
            "source": [f"{x_path.name}[{i}]" for i in range(n)],
            "problem": np.where(bad, BAD_LABEL, ""),
            "detail": [f"label {v}" if b else "" for v, b in zip(y_flat, bad)],
            "digest": digests,
        }
    )


@contextmanager
def _open_h5(path: Path, cache_root: Path) -> Iterator[Any]:
    """An HDF5 file (decompressing a .h5.gz first); any failure is one DataError naming it."""
    import h5py

    plain = _decompressed(path, cache_root)
    _regular_file(plain)
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
    except DataError:
        raise
    except Exception as exc:  # as in _open_h5
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
    except DataError:
        raise
    except Exception as exc:  # as in _open_h5
        raise DataError(f"{path}: dataset {ds.name!r} unreadable ({first_line(exc)})") from None


def _read(ds: Any, start: int, stop: int, path: Path) -> np.ndarray:
    try:
        return np.asarray(ds[start:stop])
    except Exception as exc:  # as in _open_h5
        raise DataError(f"{path}: rows {start}-{stop} unreadable ({first_line(exc)})") from None


def open_split(
    path: str | Path,
    split: str | None = None,
    prefer: tuple[str, ...] = (),
    cache_root: Path | None = None,
    progress: bool = True,
) -> CachedSplit:
    """Detect the layout at ``path``, choose a split and open (building if needed) its cache."""
    layout = open_layout(path)
    name = layout.choose_split(split, prefer)
    return open_cache(layout.listing(name), cache_root, progress=progress)
