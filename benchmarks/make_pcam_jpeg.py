"""Make a PCam-JPEG set: PCam patches from the official HDF5 files as JPEG class folders.

    python benchmarks/make_pcam_jpeg.py --pcam ~/data/pcam --out ~/data/pcam-jpeg \\
        --train 0:20100 --valid 29612:32768 --quality 75

reads ``camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5`` (or ``.h5.gz``, decompressed
once into the cache folder) from ``--pcam`` and writes ``OUT/<split>/<label>/patchNNNNNNN.jpg``,
the folder-per-class layout every ``metastasis`` command reads (label 1: tumour in the central
32x32 region; NNNNNNN: the patch's index in the official split, zero-padded to 7 digits).

Which patches of a split: ``--train N`` takes N patches drawn at random (``--seed``, sorted by
index); ``--train START:STOP`` takes the indices START to STOP-1; ``--train all`` the whole
split. A split not named is not written. Exact duplicates (identical pixels, which PCam has) are
written once: the first copy met, in the order train, valid, test and by index, is kept, so no
patch of valid or test is a copy of one in train; ``--keep-duplicates`` writes every copy.

JPEG: Pillow, baseline, quality ``--quality`` (default 75), 4:2:0 chroma subsampling, no
optimisation. The patches are read a block of ``--block`` rows at a time (28 MB for 1,024), so
memory stays bounded whatever the split's size. ``OUT/pcam_jpeg.json`` is written last: the
options, the source files, and per split the indices taken, the duplicates dropped and the
patches written per label. ``OUT`` must be empty or absent.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from metastasis.data.pcam_h5 import open_pcam, pcam_pair, read_rows
from metastasis.errors import MetastasisError
from metastasis.io import atomic_write_json

SPLITS = ("train", "valid", "test")
MANIFEST = "pcam_jpeg.json"


def parse_take(text: str) -> str:
    """Check a ``--train``/``--valid``/``--test`` value: N, START:STOP or all."""
    if text == "all" or text.isdigit():
        return text
    start, sep, stop = text.partition(":")
    if sep and start.isdigit() and stop.isdigit() and int(start) < int(stop):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: expected N, START:STOP (START < STOP) or all")


def select(take: str, n_rows: int, rng: np.random.Generator, split: str) -> np.ndarray:
    """The sorted indices of the split's ``n_rows`` that ``take`` names."""
    if take == "all":
        return np.arange(n_rows)
    if ":" in take:
        start, stop = (int(v) for v in take.split(":"))
        if stop > n_rows:
            raise SystemExit(f"--{split} {take}: the {split} split has {n_rows:,} patches")
        return np.arange(start, stop)
    n = int(take)
    if n > n_rows:
        raise SystemExit(f"--{split} {take}: the {split} split has {n_rows:,} patches")
    return np.sort(rng.choice(n_rows, size=n, replace=False))


def blocks(indices: np.ndarray, block: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(start, stop, wanted)``: contiguous row ranges of at most ``block`` rows covering the
    sorted ``indices``, each with the indices it holds."""
    i = 0
    while i < len(indices):
        start = int(indices[i])
        j = int(np.searchsorted(indices, start + block, side="left"))
        wanted = indices[i:j]
        yield start, int(wanted[-1]) + 1, wanted
        i = j


def write_split(
    pcam: Path, split: str, take: str, out: Path, args: argparse.Namespace, seen: set[bytes]
) -> dict[str, Any]:
    """Write one split's selected patches; what it did, for the manifest."""
    x_path, y_path = pcam_pair(pcam, split)
    if y_path is None:
        raise SystemExit(f"{pcam}: no camelyonpatch_level_2_split_{split}_y.h5 (labels needed)")
    rng = np.random.default_rng([args.seed, SPLITS.index(split)])
    written = {"0": 0, "1": 0}
    dropped = 0
    with open_pcam(x_path, y_path, args.cache) as (x, labels):
        indices = select(take, len(labels), rng, split)
        for label in written:
            (out / split / label).mkdir(parents=True, exist_ok=True)
        for start, stop, wanted in blocks(indices, args.block):
            rows = read_rows(x, start, stop, x_path)
            for index in wanted:
                image = rows[index - start]
                digest = hashlib.sha1(image.tobytes()).digest()
                if not args.keep_duplicates and digest in seen:
                    dropped += 1
                    continue
                seen.add(digest)
                label = str(int(labels[index]))
                Image.fromarray(image).save(
                    out / split / label / f"patch{index:07d}.jpg",
                    "JPEG",
                    quality=args.quality,
                    subsampling=2,  # 4:2:0
                    optimize=False,
                )
                written[label] += 1
    first, last = (int(indices[0]), int(indices[-1])) if len(indices) else (None, None)
    return {
        "source": [x_path.name, y_path.name],
        "take": take,
        "indices": len(indices),
        "first_index": first,
        "last_index": last,
        "duplicates_dropped": dropped,
        "written": written,
    }


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="PCam HDF5 -> JPEG class folders (OUT/<split>/<label>/patchNNNNNNN.jpg)"
    )
    ap.add_argument("--pcam", type=Path, required=True, help="folder of the official PCam files")
    ap.add_argument("--out", type=Path, required=True, help="output folder (empty or absent)")
    for split in SPLITS:
        ap.add_argument(
            f"--{split}",
            type=parse_take,
            metavar="N|START:STOP|all",
            help=f"patches of the {split} split: N at random, an index range, or all",
        )
    ap.add_argument("--seed", type=int, default=0, help="seed of the random draws (default 0)")
    ap.add_argument("--quality", type=int, default=75, help="JPEG quality 1-95 (default 75)")
    ap.add_argument("--keep-duplicates", action="store_true", help="write every exact copy")
    ap.add_argument("--block", type=int, default=1024, help="rows read at a time (default 1024)")
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="where a .h5.gz is decompressed (default: metastasis' cache folder)",
    )
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    takes = {s: getattr(args, s) for s in SPLITS if getattr(args, s) is not None}
    if not takes:
        raise SystemExit("name at least one split: --train, --valid or --test")
    if not 1 <= args.quality <= 95:
        raise SystemExit(f"--quality {args.quality}: expected 1 to 95")
    if args.block < 1:
        raise SystemExit(f"--block {args.block}: expected at least 1")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise SystemExit(f"{args.out}: output folder exists and is not empty")
    if args.cache is None:
        from metastasis.data.cache import default_cache_root

        args.cache = default_cache_root()
    started = time.perf_counter()
    seen: set[bytes] = set()
    splits = {}
    try:
        for split, take in takes.items():
            done = splits[split] = write_split(args.pcam, split, take, args.out, args, seen)
            print(
                f"{split}: {done['indices']:,} patches taken ({take}), "
                f"{done['duplicates_dropped']:,} duplicates dropped, written "
                f"{done['written']['0']:,} label 0 + {done['written']['1']:,} label 1",
                flush=True,
            )
    except MetastasisError as exc:  # a damaged or missing PCam file: one line
        raise SystemExit(str(exc)) from None
    manifest = {
        "pcam": str(args.pcam),
        "seed": args.seed,
        "jpeg": {"quality": args.quality, "subsampling": "4:2:0", "encoder": "Pillow"},
        "duplicates": "kept" if args.keep_duplicates else "exact copies dropped",
        "splits": splits,
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_json(args.out / MANIFEST, manifest)
    return manifest


if __name__ == "__main__":
    main(sys.argv[1:])
