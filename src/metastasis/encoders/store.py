"""The embedding store: one encoder's embeddings of one cached split, memory-mapped.

Keyed like the patch cache (``data/cache.py``): a folder named by the SHA-256 of the split's
data fingerprint, the encoder's spec (architecture, kwargs, input size, interpolation, mean,
std, pooling) and its weight file's SHA-256, so any change to one of them is another store,
and the same inputs reuse it. Built in chunks of ``CHUNK`` rows, each written atomically into
``.NAME.building/`` (a crash or a kill loses at most the chunk in progress; a rerun resumes);
``shard=(i, n)`` encodes the chunks ``k`` with ``k % n == i``, so that ``n`` processes
(a SLURM array) fill one store; whoever completes the last chunk assembles ``embeddings.npy``
(N x D float32, a chunk at a time: bounded memory) and renames the folder to its final name.
Rows the split marks as unusable are encoded like the others (zeros in the cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from metastasis.data.cache import default_cache_root
from metastasis.encoders.registry import EncoderSpec
from metastasis.encoders.weights import Weights
from metastasis.errors import MetastasisError, OutputError
from metastasis.io import atomic_path, atomic_write_json, os_problem, output_dir
from metastasis.transforms.presets import PCAM_MPP, Preprocessing

STORE_VERSION = 1
CHUNK = 1024
LOCK = "assemble.lock"


class Rows(Protocol):
    """What a store is built from: a cached split, or a slide's tissue tiles
    (``encoders.tiles.SlideTiles``): uint8 N x H x W x 3 ``images`` (sliced a chunk at a
    time), a ``fingerprint`` of everything they depend on, and ``meta["split"]`` (in the
    store's name)."""

    meta: dict[str, Any]

    @property
    def images(self) -> Any: ...

    @property
    def name(self) -> str: ...

    @property
    def fingerprint(self) -> str: ...

    def __len__(self) -> int: ...


class EmbeddingStore:
    """A finished store: ``embeddings`` (N x D float32 memory map, rows as in the split)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta: dict[str, Any] = json.loads((path / "meta.json").read_text())
        self._emb: np.ndarray | None = None

    @property
    def embeddings(self) -> np.ndarray:
        if self._emb is None:
            self._emb = np.load(self.path / "embeddings.npy", mmap_mode="r")
        return self._emb

    def __len__(self) -> int:
        return int(self.meta["n"])

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])


def preprocessing_of(spec: EncoderSpec, mpp: float = PCAM_MPP) -> Preprocessing:
    """The encoder's input: its normalisation, then a bilinear resize to its input size."""
    return Preprocessing(input_size=spec.input_size, mean=spec.mean, std=spec.std, mpp=mpp)


def store_key(fingerprint: str, spec: EncoderSpec, weights: Weights) -> dict[str, Any]:
    """Everything an embedding depends on (the store's name is its hash)."""
    d = spec.to_dict()
    return {
        "version": STORE_VERSION,
        "data_fingerprint": fingerprint,
        "encoder": {k: d[k] for k in ("arch", "kwargs", "runtime", "pooling", "input_size")},
        "preprocessing": {k: d[k] for k in ("input_size", "interpolation", "mean", "std")},
        "weights_sha256": weights.sha256 or "random",
        "dtype": "float32",
    }


def store_path(root: Path, split: Rows, spec: EncoderSpec, weights: Weights) -> Path:
    key = store_key(split.fingerprint, spec, weights)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.name)
    return root / f"{safe}-{split.meta['split']}-{digest}"


def default_store_root() -> Path:
    return default_cache_root() / "embeddings"


def encode_batches(
    encoder: torch.nn.Module,
    images: np.ndarray,
    prep: Preprocessing,
    batch_size: int,
    device: torch.device,
    on_batch: Callable[[int], object] | None = None,
) -> np.ndarray:
    """uint8 N x H x W x 3 -> float32 N x D, ``batch_size`` patches at a time."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.array(images[start : start + batch_size]))  # a writable copy
            z = encoder(prep(x.to(device)))
            out.append(z.float().cpu().numpy())
            if on_batch is not None:
                on_batch(len(x))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def build_store(
    split: Rows,
    spec: EncoderSpec,
    weights: Weights,
    encoder: Callable[[], torch.nn.Module],
    root: Path | None = None,
    *,
    batch_size: int = 64,
    shard: tuple[int, int] = (0, 1),
    device: str = "cpu",
    progress: bool = True,
    prepare: Callable[[Path], object] | None = None,
) -> EmbeddingStore | None:
    """The finished store of ``split`` (built or resumed: its chunks of ``shard`` encoded);
    None when chunks of other shards are still missing. ``encoder`` is called only if
    something is left to encode; ``prepare(folder)`` may write files that travel with the
    store (a slide's tiles table) into the folder being built, before any chunk."""
    root = Path(root) if root else default_store_root()
    final = store_path(root, split, spec, weights)
    if (final / "meta.json").is_file():
        return EmbeddingStore(final)
    output_dir(root, "embedding store folder")
    build = root / f".{final.name}.building"
    n_chunks = max(1, -(-len(split) // CHUNK))
    index, count = shard
    todo = [k for k in range(n_chunks) if k % count == index and not _chunk(build, k).is_file()]
    try:
        build.mkdir(exist_ok=True)
        if prepare is not None:
            prepare(build)
        if todo:
            _encode_chunks(split, spec, encoder(), build, todo, batch_size, device, progress)
        if all(_chunk(build, k).is_file() for k in range(n_chunks)):
            return _assemble(split, spec, weights, build, final, n_chunks)
    except OSError as exc:
        raise OutputError(f"{build}: cannot write the embedding store: {os_problem(exc)}") from None
    return None


def _chunk(build: Path, k: int) -> Path:
    return build / f"chunk-{k:06d}.npy"


def _encode_chunks(
    split: Rows,
    spec: EncoderSpec,
    encoder: torch.nn.Module,
    build: Path,
    todo: list[int],
    batch_size: int,
    device: str,
    progress: bool,
) -> None:
    dev = torch.device(device)
    encoder = encoder.to(dev).eval()
    prep = preprocessing_of(spec)
    total = sum(len(range(k * CHUNK, min((k + 1) * CHUNK, len(split)))) for k in todo)
    bar = tqdm(total=total, desc=f"embed {spec.name}", unit="patch", disable=not progress)
    with bar:
        for k in todo:
            rows = np.asarray(split.images[k * CHUNK : (k + 1) * CHUNK])
            z = encode_batches(encoder, rows, prep, batch_size, dev, bar.update)
            with atomic_path(_chunk(build, k)) as tmp, open(tmp, "wb") as fh:
                np.save(fh, z.astype(np.float32, copy=False))


def _assemble(
    split: Rows,
    spec: EncoderSpec,
    weights: Weights,
    build: Path,
    final: Path,
    n_chunks: int,
) -> EmbeddingStore | None:
    """Chunks -> ``embeddings.npy`` + ``meta.json``, then the folder gets its final name; one
    process does it (an exclusive lock file); the others return None."""
    lock = build / LOCK
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return EmbeddingStore(final) if (final / "meta.json").is_file() else None
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    first = np.load(_chunk(build, 0), mmap_mode="r")
    dim = int(first.shape[1])
    with atomic_path(build / "embeddings.npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(split), dim))
        for k in range(n_chunks):
            part = np.load(_chunk(build, k), mmap_mode="r")
            out[k * CHUNK : k * CHUNK + len(part)] = part
        out.flush()
        del out
    meta = {
        **store_key(split.fingerprint, spec, weights),
        "n": len(split),
        "dim": dim,
        "encoder_name": spec.name,
        "licence": spec.licence,
        "weights": weights.label,
        "split": split.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_json(build / "meta.json", meta)
    for k in range(n_chunks):
        _chunk(build, k).unlink()
    lock.unlink()
    try:
        os.rename(build, final)
    except OSError:  # another process finished the same store first
        if not (final / "meta.json").is_file():
            raise
        shutil.rmtree(build, ignore_errors=True)
    return EmbeddingStore(final)


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (0 <= I < N) -> (I, N); one-line error otherwise."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise MetastasisError(f"--shard: expected I/N such as 0/4, got {text!r}") from None
    if not 0 <= i < n:
        raise MetastasisError(f"--shard: need 0 <= I < N, got {text!r}")
    return i, n
