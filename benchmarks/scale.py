"""Goal 4: Kaggle scale. A synthetic set of 220,025 .tif patches: cache build rate, steady
training throughput over one epoch, and anonymous memory (RssAnon) throughout.

    python benchmarks/scale.py --work /big/disk/folder [--n 220025] [--model baseline-cnn] \\
        [--precision bf16-mixed] [--batch-size 128] [--json OUT]

1. Writes ``WORK/kaggle``: the Kaggle layout (``train/<id>.tif`` + ``train_labels.csv``) with
   ``--n`` synthetic patches (``metastasis synth --layout kaggle``; about 6 GB for 220,025;
   kept and reused by later runs).
2. ``metastasis check WORK/kaggle`` into an empty cache: the cache build (decode + integrity
   checks + duplicate hashing), its rate in patches/s (the goal: >= 2,000) and peak RssAnon.
3. ``metastasis train --no-progress`` for one epoch on it (80/20 split): throughput in each
   tenth of the epoch, from the trainer's log (steady means the tenths agree), and peak
   RssAnon of the whole process tree sampled every 0.5 s (the goal: < 3 GiB).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import time
from pathlib import Path

from _common import METASTASIS, machine, save
from rss import run as run_sampled

TENTH = re.compile(r"epoch 1/1: (\d+)/(\d+) batches \(\d+%\), ([\d.]+|inf) patches/s")


def epoch_tenths(stderr: str) -> list[float]:
    """Patches/s in each tenth of the epoch: the trainer logs one line per tenth without its
    progress bar (``engine.progress``)."""
    return [float(m.group(3)) for m in TENTH.finditer(stderr)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--work", required=True, help="folder for the data set, cache and run")
    ap.add_argument("--n", type=int, default=220_025)
    ap.add_argument("--model", default="baseline-cnn")
    ap.add_argument("--precision", default="bf16-mixed")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    work = Path(args.work)
    data, cache, run_dir = work / "kaggle", work / "cache", work / "run"
    result: dict = {"machine": machine(), "n": args.n}

    if not (data / "train_labels.csv").is_file():
        start = time.perf_counter()
        subprocess.run(
            [
                *METASTASIS,
                "synth",
                "--layout",
                "kaggle",
                "--out",
                str(data),
                "--n",
                str(args.n),
                "--n-valid",
                "0",
            ],
            check=True,
        )
        result["synth_s"] = round(time.perf_counter() - start, 1)
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)

    check = run_sampled(
        [*METASTASIS, "check", str(data), "--cache-dir", str(cache), "--no-progress"], interval=0.5
    )
    result["cache_build"] = {
        "seconds": check["wall_s"],
        "patches_per_s": round(args.n / float(check["wall_s"]), 1),  # type: ignore[arg-type]
        "peak_rss_anon_gib": check["peak_rss_anon_gib"],
    }
    print(result["cache_build"], flush=True)

    log = work / "train.stderr"
    cmd = [
        *METASTASIS,
        "train",
        "--data",
        str(data),
        "--model",
        args.model,
        "--epochs",
        "1",
        "--precision",
        args.precision,
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
        "--cache-dir",
        str(cache),
        "--out",
        str(run_dir),
        "--no-progress",
    ]
    # the log goes to a file (parsed below); RssAnon is sampled meanwhile
    train = run_sampled(["bash", "-c", 'exec "$@" 2>"$0"', str(log), *cmd], interval=0.5)
    tenths = epoch_tenths(log.read_text(errors="replace"))
    samples = train["samples"]
    result["train_epoch"] = {
        "wall_s": train["wall_s"],
        "patches_per_s_by_tenth": tenths,
        "steadiness_min_over_max": round(min(tenths) / max(tenths), 3) if tenths else None,
        "peak_rss_anon_gib": train["peak_rss_anon_gib"],
        "rss_anon_gib_every_30s": [
            round(kib / 1024**2, 2)
            for t, kib in samples[::60]  # type: ignore[index]
        ],
    }
    save(result, args.json)


if __name__ == "__main__":
    main()
