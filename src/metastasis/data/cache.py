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

PCam HDF5 files are opened and checked by `data.pcam_h5` (one policy: a data file never makes
the tool open another file, and every patch it declares is stored); this module copies the rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from metastasis.data import pcam_h5
from metastasis.data.decode import PATCH_SHAPE, decode_file, pixel_digest
from metastasis.data.layouts import open_layout
from metastasis.data.listing import BAD_LABEL, Finding, Listing
from metastasis.errors import DataError, OutputError
from metastasis.io import (
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


def _build_from_h5(listing: Listing, tmp: Path, cache_root: Path, progress: bool) -> pd.DataFrame:
    x_path = listing.h5_files[0]
    y_path = listing.h5_files[1] if len(listing.h5_files) > 1 else None
    with pcam_h5.open_pcam(x_path, y_path, cache_root) as (x, y_flat):
        n = len(y_flat)
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
                arr = pcam_h5.read_rows(x, s, min(s + block, n), x_path)
                images[s : s + len(arr)] = arr
                digests += [pixel_digest(a) for a in arr]
                bar.update(len(arr))
        images.flush()
    bad = ~np.isin(y_flat, (0, 1)) if y_path is not None else np.zeros(n, bool)
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


def open_labelled(
    path: str | Path,
    split: str | None,
    prefer: tuple[str, ...],
    cache_root: str | Path | None,
    progress: bool,
    needs: str,
) -> tuple[CachedSplit, np.ndarray]:
    """``open_split`` for a use that needs labels (``needs`` says which, for the message): the
    split and its usable rows; a `DataError` when it has no labels or no usable patches."""
    cached = open_split(path, split, prefer, Path(cache_root) if cache_root else None, progress)
    if not cached.labelled:
        raise DataError(f"{cached.name}: has no labels; {needs}")
    rows = cached.usable_indices()
    if len(rows) == 0:
        raise DataError(f"{cached.name}: no usable patches")
    return cached, rows
