"""Start-up of the command line, as whole processes: wall and CPU seconds, medians of repeats.

    python benchmarks/startup.py --checkpoint RUN --image ONE.jpg --code src \\
        --code /tmp/old-main/src --repeats 7 --json out.json

For each ``--code`` source tree (run with ``PYTHONPATH`` set to it, the same interpreter),
interleaved ``--repeats`` times: ``metastasis --version``, ``metastasis --help``,
``metastasis predict --help``, ``metastasis predict --checkpoint RUN --data ONE.jpg`` (one
image file; a tree whose ``predict`` refuses a file is skipped there) and ``metastasis
predict --checkpoint RUN --data FOLDER`` (a folder holding that one image, its cache warm
after a first run). CPU seconds are the child's user + system time (``resource``).
``--importtime`` also writes ``python -X importtime``'s report of the one-image predict per
tree beside the JSON, and prints its 12 slowest imports.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine


def commands(args: argparse.Namespace, work: Path) -> dict[str, list[str]]:
    folder = work / "one-image"
    folder.mkdir(exist_ok=True)
    shutil.copy(args.image, folder / Path(args.image).name)
    cache = ["--cache-dir", str(work / "cache"), "--no-progress"]
    ckpt = ["--checkpoint", args.checkpoint]
    return {
        "--version": ["--version"],
        "--help": ["--help"],
        "predict --help": ["predict", "--help"],
        "predict ONE_IMAGE": [
            "-q",
            "predict",
            *ckpt,
            "--data",
            args.image,
            "--out",
            str(work / "one.csv"),
        ],
        "predict FOLDER (1 image)": [
            "-q",
            "predict",
            *ckpt,
            "--data",
            str(folder),
            "--out",
            str(work / "folder.csv"),
            *cache,
        ],
    }


def timed(code: str, argv: list[str]) -> tuple[float, float, int]:
    env = dict(os.environ, PYTHONPATH=str(Path(code).resolve()))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "metastasis", *argv], env=env,
                          capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def importtime(code: str, argv: list[str], out: Path) -> list[tuple[int, str]]:
    env = dict(os.environ, PYTHONPATH=str(Path(code).resolve()))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "metastasis", *argv],
                          env=env, capture_output=True, text=True)  # fmt: skip
    out.write_text(proc.stderr)
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            if len(name) - len(name.lstrip()) <= 3:  # top-level imports (and their first level)
                rows.append((int(parts[1]), name.strip()))
    return sorted(rows, reverse=True)[:12]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a run folder (checkpoint.pt, model.onnx)")
    ap.add_argument("--image", required=True, help="one 96x96 image file")
    ap.add_argument("--code", action="append", default=[], help="a source tree (repeatable)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json")
    ap.add_argument("--importtime", action="store_true")
    args = ap.parse_args()
    codes = args.code or ["src"]
    work = Path(tempfile.mkdtemp(prefix="startup-"))
    cmds = commands(args, work)
    runs: dict[str, dict[str, list[tuple[float, float]]]] = {
        c: {k: [] for k in cmds} for c in codes
    }
    for code in codes:  # warm the page cache and the patch cache once
        for argv in cmds.values():
            timed(code, argv)
    for _ in range(args.repeats):
        for code in codes:
            for name, argv in cmds.items():
                wall, cpu, rc = timed(code, argv)
                if rc == 0:
                    runs[code][name].append((wall, cpu))
    result: dict[str, Any] = {"machine": machine(), "load": os.getloadavg(), "medians": {}}
    print(f"| command | {' | '.join(f'{c}: wall s | {c}: CPU s' for c in codes)} |")
    print("|---" * (1 + 2 * len(codes)) + "|")
    for name in cmds:
        cells = []
        for code in codes:
            done = runs[code][name]
            if not done:
                cells += ["refused", ""]
                continue
            wall = statistics.median(w for w, _ in done)
            cpu = statistics.median(c for _, c in done)
            result["medians"].setdefault(code, {})[name] = {"wall_s": wall, "cpu_s": cpu,
                                                            "runs": len(done)}  # fmt: skip
            cells += [f"{wall:.2f}", f"{cpu:.2f}"]
        print(f"| `{name}` | " + " | ".join(cells) + " |")
    if args.importtime:
        for i, code in enumerate(codes):
            out = Path(args.json or "startup.json").with_suffix(f".importtime-{i}.txt")
            top = importtime(code, cmds["predict ONE_IMAGE"], out)
            print(f"{code}: slowest imports of predict ONE_IMAGE (us, cumulative):", top)
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "runs": runs}, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
