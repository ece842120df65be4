"""Issue 15's whole-slide goals, side by side: ``metastasis slides`` against WSInfer 0.6.1.

    python benchmarks/make_mosaic_slide.py --data ../shared/data/pcam-jpeg/valid \\
        --out /tmp/slides-bench/slide/mosaic.tif --size 20000 --mpp 0.972
    python benchmarks/slides_vs_wsinfer.py --slide /tmp/slides-bench/slide/mosaic.tif \\
        --truth /tmp/slides-bench/slide/mosaic.truth.json --checkpoint RUN \\
        --wsinfer-python /tmp/slides-bench/wsinfer-venv/bin/python --json out.json

In one run, on the same slide and model (the checkpoint, exported to TorchScript for WSInfer;
``wsinfer_peer.py`` says how WSInfer tiles and why its tiles are ours at stride 96):
1. ``metastasis slides --stride 96`` as a process, end to end (open, mask, read, classify,
   write), from an empty output folder; goal < 60 s;
2. ``wsinfer run`` as a process, end to end, from an empty results folder (patching + inference
   + CSV); tiles/s ratio ours / WSInfer, goal >= 2;
3. ``metastasis slides --stride 32``; goal <= 1.5x the stride-96 time.
Then: probabilities of the tiles both classified (matched by level-0 top-left corner; goal
within 1e-3), Dice of each map thresholded at the checkpoint's threshold against the true
tumour mask, and each blob's measured longest diameter against the true one
(``slide_truth.py``). ``--repeats N`` repeats the timed runs (interleaved) and reports medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine
from slide_truth import (
    blob_measurements,
    dice,
    false_regions,
    load_truth,
    predicted_grid,
    tissue_coverage,
    truth_on_grid,
)
from wsinfer_peer import children_cpu_s, export_for_wsinfer, run_wsinfer


def run_ours(args: argparse.Namespace, stride: int, out: Path) -> dict[str, Any]:
    """``metastasis slides`` on the slide from an empty output folder, as a process."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "metastasis", "slides", str(args.slide), "--checkpoint",
           str(args.checkpoint), "--out", str(out), "--stride", str(stride), "--no-progress",
           *args.ours_args.split()]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    start, cpu0 = time.perf_counter(), children_cpu_s()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall, cpu = time.perf_counter() - start, children_cpu_s() - cpu0
    log = proc.stdout + proc.stderr
    (out.parent / f"ours-{stride}.log").write_text(log)
    if proc.returncode:
        tail = "\n".join(log.strip().splitlines()[-15:])
        raise RuntimeError(f"metastasis slides exited with {proc.returncode}:\n{tail}")
    folders = [p for p in out.iterdir() if (p / "summary.json").is_file()]
    if len(folders) != 1:
        raise RuntimeError(f"{out}: expected one finished slide folder, found {len(folders)}")
    folder = folders[0]
    summary = json.loads((folder / "summary.json").read_text())
    tiles = pd.read_csv(folder / "tiles.csv")
    tiles = tiles[tiles["status"] == "ok"] if "status" in tiles else tiles
    return {
        "command": " ".join(cmd[1:]).replace("-m metastasis", "metastasis", 1),
        "wall_s": wall,
        "cpu_s": cpu,
        "tiles": len(tiles),
        "tiles_per_s": len(tiles) / wall,
        "summary": summary,
        "log_tail": log.strip().splitlines()[-4:],
        "x": tiles["x"].to_numpy(np.int64),
        "y": tiles["y"].to_numpy(np.int64),
        "probability": tiles["probability"].to_numpy(np.float64),
        "folder": str(folder),
    }


def agreement(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Probabilities of the tiles both classified, matched by level-0 top-left corner."""
    a = pd.DataFrame({"x": ours["x"], "y": ours["y"], "ours": ours["probability"]})
    b = pd.DataFrame({"x": theirs["x"], "y": theirs["y"], "wsinfer": theirs["probability"]})
    both = a.merge(b, on=["x", "y"])
    diff = (both["ours"] - both["wsinfer"]).abs().to_numpy()
    return {
        "tiles_ours": len(a),
        "tiles_wsinfer": len(b),
        "tiles_both": len(both),
        "only_ours": len(a) - len(both),
        "only_wsinfer": len(b) - len(both),
        "max_abs_diff": float(diff.max()) if diff.size else None,
        "mean_abs_diff": float(diff.mean()) if diff.size else None,
        "over_1e-3": int((diff > 1e-3).sum()),
    }


def accuracy(run: dict[str, Any], stride: int, truth: dict, mask96: np.ndarray,
             tissue96: np.ndarray, threshold: float) -> dict[str, Any]:  # fmt: skip
    grid = truth_on_grid(mask96, truth["cell_px"], stride)
    pred = predicted_grid(run["x"], run["y"], run["probability"], threshold, stride, grid.shape)
    mpp = truth["mpp"]
    cell = truth["cell_px"]
    return {
        "tissue": tissue_coverage(run["x"], run["y"], tissue96, cell) if stride == cell else None,
        "threshold": threshold,
        "dice": dice(pred, grid),
        "predicted_cells": int(pred.sum()),
        "true_cells": int(grid.sum()),
        "blobs": blob_measurements(pred, truth, stride, mpp),
        "false_regions": false_regions(pred, grid, stride, mpp),
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    cpus = [r["cpu_s"] for r in runs]
    mid = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {**mid, "walls_s": walls, "cpus_s": cpus, "wall_s": wall, "cpu_s": cpu,
            "tiles_per_s": mid["tiles"] / wall, "tiles_per_cpu_s": mid["tiles"] / cpu}  # fmt: skip


def say(i: int, label: str, r: dict[str, Any]) -> None:
    print(f"[{i}] {label}: {r['wall_s']:.1f} s (CPU {r['cpu_s']:.1f} s), {r['tiles']} tiles, "
          f"{r['tiles_per_s']:.0f} tiles/s", flush=True)  # fmt: skip


def strip(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if not isinstance(v, np.ndarray)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slide", type=Path, required=True)
    ap.add_argument("--truth", type=Path, required=True, help="the slide's .truth.json")
    ap.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    ap.add_argument("--wsinfer-python", default=os.environ.get("WSINFER_PYTHON"),
                    help="python of the venv with wsinfer 0.6.1 ($WSINFER_PYTHON)")  # fmt: skip
    ap.add_argument("--stride", type=int, default=96, help="the stride raced against WSInfer")
    ap.add_argument("--dense-stride", type=int, default=32, help="0: skip the dense map")
    ap.add_argument("--work", type=Path, default=Path("/tmp/slides-bench/race"))
    ap.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS for both")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--ours-args", default="", help="more options for metastasis slides")
    ap.add_argument("--wsinfer-workers", type=int, help="WSInfer's --num-workers (its default)")
    ap.add_argument("--skip-ours", action="store_true", help="WSInfer alone")
    ap.add_argument("--skip-wsinfer", action="store_true", help="ours alone")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if not args.skip_wsinfer and not args.wsinfer_python:
        ap.error("--wsinfer-python (or $WSINFER_PYTHON) is needed unless --skip-wsinfer")
    args.work.mkdir(parents=True, exist_ok=True)
    truth, mask96, tissue96 = load_truth(args.truth)
    load = os.getloadavg()
    result: dict[str, Any] = {"machine": machine(), "load_before": load, "slide": str(args.slide),
                              "checkpoint": str(args.checkpoint)}  # fmt: skip
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    with open(args.slide, "rb") as f:  # both sides start with the slide in the page cache
        while f.read(1 << 24):
            pass

    model, config, info = export_for_wsinfer(args.checkpoint, args.work / "wsinfer-model")
    result["model"] = info
    threshold = info["threshold"]
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "wsinfer": [], "dense": []}
    for i in range(args.repeats):
        if not args.skip_ours:
            r = run_ours(args, args.stride, args.work / f"ours-{args.stride}")
            say(i, f"ours stride {args.stride}", r)
            runs["ours"].append(r)
        if not args.skip_wsinfer:
            overlap = 1 - args.stride / truth["cell_px"]
            r = run_wsinfer(args.wsinfer_python, args.slide, model, config,
                            args.work / "wsinfer", args.threads, overlap=overlap,
                            num_workers=args.wsinfer_workers)  # fmt: skip
            say(i, "wsinfer", r)
            runs["wsinfer"].append(r)
        if not args.skip_ours and args.dense_stride:
            r = run_ours(args, args.dense_stride, args.work / f"ours-{args.dense_stride}")
            say(i, f"ours stride {args.dense_stride}", r)
            runs["dense"].append(r)

    ours = median_run(runs["ours"]) if runs["ours"] else None
    theirs = median_run(runs["wsinfer"]) if runs["wsinfer"] else None
    dense = median_run(runs["dense"]) if runs["dense"] else None
    goals: dict[str, Any] = {}
    for key, run, stride in (("ours", ours, args.stride), ("wsinfer", theirs, args.stride),
                             ("dense", dense, args.dense_stride)):  # fmt: skip
        if run:
            score = accuracy(run, stride, truth, mask96, tissue96, threshold)
            result[key] = {**strip(run), "accuracy": score}
    if ours:
        wall = ours["wall_s"]
        goals["stride96_wall_s"] = {"value": wall, "goal": "< 60", "met": wall < 60}
    if ours and theirs:
        ratio = ours["tiles_per_s"] / theirs["tiles_per_s"]
        goals["tiles_per_s_ratio"] = {"value": ratio, "goal": ">= 2", "met": ratio >= 2}
        goals["wall_ratio_wsinfer_over_ours"] = theirs["wall_s"] / ours["wall_s"]
        goals["tiles_per_cpu_s_ratio"] = ours["tiles_per_cpu_s"] / theirs["tiles_per_cpu_s"]
        agree = agreement(ours, theirs)
        result["agreement"] = agree
        worst = agree["max_abs_diff"]
        met = worst is not None and worst <= 1e-3
        goals["probability_max_abs_diff"] = {"value": worst, "goal": "<= 1e-3", "met": met}
    if ours and dense:
        ratio = dense["wall_s"] / ours["wall_s"]
        goals["dense_over_stride96"] = {"value": ratio, "goal": "<= 1.5", "met": ratio <= 1.5}
        goals["dense_over_stride96_cpu"] = dense["cpu_s"] / ours["cpu_s"]
    result["goals"] = goals
    result["load_after"] = os.getloadavg()
    text = json.dumps(result, indent=1, default=float)
    if args.json:
        Path(args.json).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
