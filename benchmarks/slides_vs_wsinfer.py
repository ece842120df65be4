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
(``slide_truth.py``). ``--repeats N`` repeats the timed runs (interleaved, every other repeat
in reverse order) and reports medians.

``--engine int8`` runs our side with ``metastasis slides --engine int8`` (the run folder's
``model.int8.xml``: ``metastasis export --format int8 --calibration DATA``; issue 25's goal:
>= 4x WSInfer's tiles/s); WSInfer still runs the float32 TorchScript, as its users run it.
``--compare-fp32`` adds our float32 run at ``--stride`` after WSInfer's, and the int8 map's
agreement with it (probabilities, labels, the slide's category).
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
    tool_regions,
    truth_on_grid,
)
from wsinfer_peer import children_cpu_s, export_for_wsinfer, read_wsinfer, run_wsinfer


def run_ours(args: argparse.Namespace, stride: int, engine: str = "fp32") -> dict[str, Any]:
    """``metastasis slides`` on the slide from an empty output folder, as a process.

    ``engine`` "fp32" leaves ``--engine`` at its default (ONNX Runtime float32 on a CPU);
    "int8" passes ``--engine int8``."""
    name = f"ours-{stride}" if engine == "fp32" else f"ours-{engine}-{stride}"
    out = args.work / name
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "metastasis", "slides", str(args.slide), "--checkpoint",
           str(args.checkpoint), "--out", str(out), "--stride", str(stride), "--no-progress",
           *(["--engine", engine] if engine != "fp32" else []),
           *args.ours_args.split()]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    start, cpu0 = time.perf_counter(), children_cpu_s()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall, cpu = time.perf_counter() - start, children_cpu_s() - cpu0
    log = proc.stdout + proc.stderr
    (out.parent / f"{name}.log").write_text(log)
    if proc.returncode:
        tail = "\n".join(log.strip().splitlines()[-15:])
        raise RuntimeError(f"metastasis slides exited with {proc.returncode}:\n{tail}")
    folders = [p for p in out.iterdir() if (p / "summary.json").is_file()]
    if len(folders) != 1:
        raise RuntimeError(f"{out}: expected one finished slide folder, found {len(folders)}")
    run = {
        "command": " ".join(cmd[1:]).replace("-m metastasis", "metastasis", 1),
        "engine": engine,
        "wall_s": wall,
        "cpu_s": cpu,
        "log_tail": log.strip().splitlines()[-4:],
        "folder": str(folders[0]),
    }
    return read_ours(run)


def read_ours(run: dict[str, Any]) -> dict[str, Any]:
    """A run of ours with its slide folder's summary and tiles (classified ones) added."""
    folder = Path(run["folder"])
    tiles = pd.read_csv(folder / "tiles.csv")
    tiles = tiles[tiles["status"] == "ok"] if "status" in tiles else tiles
    return {
        **run,
        "tiles": len(tiles),
        "tiles_per_s": len(tiles) / run["wall_s"],
        "summary": json.loads((folder / "summary.json").read_text()),
        "x": tiles["x"].to_numpy(np.int64),
        "y": tiles["y"].to_numpy(np.int64),
        "probability": tiles["probability"].to_numpy(np.float64),
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
    regions = Path(run.get("folder", "-")) / "regions.geojson"
    return {
        "tool_regions": tool_regions(regions, truth) if regions.is_file() else None,
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
    cpus = [r.get("cpu_s") for r in runs]
    mid = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
    wall = statistics.median(walls)
    cpu = statistics.median(cpus) if None not in cpus else None  # type: ignore[type-var]
    return {**mid, "walls_s": mid.get("walls_s") or walls, "wall_s": wall, "cpu_s": cpu,
            "cpus_s": mid.get("cpus_s") or cpus, "tiles_per_s": mid["tiles"] / wall,
            "tiles_per_cpu_s": mid["tiles"] / cpu if cpu else None}  # fmt: skip


def say(i: int, label: str, r: dict[str, Any]) -> None:
    print(f"[{i}] {label}: {r['wall_s']:.1f} s (CPU {r['cpu_s']:.1f} s), {r['tiles']} tiles, "
          f"{r['tiles_per_s']:.0f} tiles/s", flush=True)  # fmt: skip


def strip(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if not isinstance(v, np.ndarray)}


def engine_agreement(quant: dict[str, Any], exact: dict[str, Any], threshold: float) -> dict:
    """The int8 map against the float32 one on the same tiles: probabilities, labels, slide."""
    a = pd.DataFrame({"x": quant["x"], "y": quant["y"], "int8": quant["probability"]})
    b = pd.DataFrame({"x": exact["x"], "y": exact["y"], "fp32": exact["probability"]})
    both = a.merge(b, on=["x", "y"])
    diff = (both["int8"] - both["fp32"]).abs().to_numpy()
    flipped = (both["int8"] >= threshold) != (both["fp32"] >= threshold)
    keys = ("category", "largest_diameter_mm", "lesions", "tumour_area_mm2")
    slide = {k: [quant["summary"].get(k), exact["summary"].get(k)] for k in keys}
    return {
        "tiles_int8": len(a),
        "tiles_fp32": len(b),
        "tiles_both": len(both),
        "max_abs_diff": float(diff.max()) if diff.size else None,
        "p99_abs_diff": float(np.percentile(diff, 99)) if diff.size else None,
        "mean_abs_diff": float(diff.mean()) if diff.size else None,
        "labels_flipped": int(flipped.sum()),
        "threshold": threshold,
        "slide_int8_fp32": slide,
        "same_category": slide["category"][0] == slide["category"][1],
    }


RUN_KEYS = ("ours", "wsinfer", "ours_fp32", "dense")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slide", type=Path, required=True)
    ap.add_argument("--truth", type=Path, required=True, help="the slide's .truth.json")
    ap.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    ap.add_argument("--wsinfer-python", default=os.environ.get("WSINFER_PYTHON"),
                    help="python of the venv with wsinfer 0.6.1 ($WSINFER_PYTHON)")  # fmt: skip
    ap.add_argument("--stride", type=int, default=96, help="the stride raced against WSInfer")
    ap.add_argument("--dense-stride", type=int, default=32, help="0: skip the dense map")
    ap.add_argument("--engine", choices=("fp32", "int8"), default="fp32",
                    help="our engine: fp32 (metastasis slides' default) or int8 "
                    "(--engine int8; needs the run folder's model.int8.xml)")  # fmt: skip
    ap.add_argument("--compare-fp32", action="store_true",
                    help="with --engine int8: our fp32 run too, and the agreement")  # fmt: skip
    ap.add_argument("--work", type=Path, default=Path("/tmp/slides-bench/race"))
    ap.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS for both")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--ours-args", default="", help="more options for metastasis slides")
    ap.add_argument("--wsinfer-workers", type=int, help="WSInfer's --num-workers (its default)")
    ap.add_argument("--skip-ours", action="store_true", help="WSInfer alone")
    ap.add_argument("--skip-wsinfer", action="store_true", help="ours alone")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--score-only", action="store_true",
                    help="no runs: score --work's outputs again (timings from --json)")  # fmt: skip
    args = ap.parse_args()
    if not args.skip_wsinfer and not args.wsinfer_python:
        ap.error("--wsinfer-python (or $WSINFER_PYTHON) is needed unless --skip-wsinfer")
    if args.compare_fp32 and args.engine == "fp32":
        ap.error("--compare-fp32 is for --engine int8")
    if args.score_only and not args.json:
        ap.error("--score-only needs --json (the earlier result, rewritten)")
    return args


def previous_runs(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, list]:
    """--score-only: the runs of the earlier --json, their outputs read again."""
    old = json.loads(Path(args.json).read_text())
    result.update({k: old[k] for k in ("machine", "load_before", "load_after") if k in old})
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in RUN_KEYS}
    for key in runs:
        if key in old:
            prev = {c: old[key][c] for c in old[key] if c != "accuracy"}
            run = read_wsinfer(prev) if key == "wsinfer" else read_ours(prev)
            runs[key].append({**run, "walls_s": prev.get("walls_s"),
                              "cpus_s": prev.get("cpus_s")})  # fmt: skip
    return runs


def race(args: argparse.Namespace, model: Path, config: Path, cell_px: int) -> dict[str, list]:
    """The timed runs, each repeat in the order ours, WSInfer, ours fp32, dense (every other
    repeat reversed), so that no side always runs first or last."""
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in RUN_KEYS}
    steps: list[tuple[str, str]] = []
    if not args.skip_ours:
        steps.append(("ours", f"ours {args.engine} stride {args.stride}"))
    if not args.skip_wsinfer:
        steps.append(("wsinfer", f"wsinfer stride {args.stride}"))
    if not args.skip_ours and args.compare_fp32:
        steps.append(("ours_fp32", f"ours fp32 stride {args.stride}"))
    if not args.skip_ours and args.dense_stride:
        steps.append(("dense", f"ours {args.engine} stride {args.dense_stride}"))
    for i in range(args.repeats):
        for key, label in steps if i % 2 == 0 else steps[::-1]:
            if key == "wsinfer":
                r = run_wsinfer(args.wsinfer_python, args.slide, model, config,
                                args.work / "wsinfer", args.threads,
                                overlap=1 - args.stride / cell_px,
                                num_workers=args.wsinfer_workers)  # fmt: skip
            elif key == "ours_fp32":
                r = run_ours(args, args.stride, "fp32")
            else:
                stride = args.dense_stride if key == "dense" else args.stride
                r = run_ours(args, stride, args.engine)
            say(i, label, r)
            runs[key].append(r)
    return runs


def goals_of(args: argparse.Namespace, best: dict[str, Any], threshold: float,
             result: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The goals from the median runs; agreements are added to ``result``."""
    ours, theirs, fp32, dense = (best.get(k) for k in RUN_KEYS)
    goals: dict[str, Any] = {}
    if ours:
        wall = ours["wall_s"]
        goals["stride96_wall_s"] = {"value": wall, "goal": "< 60", "met": wall < 60}
    if ours and theirs:
        ratio = ours["tiles_per_s"] / theirs["tiles_per_s"]
        want = 4 if args.engine == "int8" else 2
        goals["tiles_per_s_ratio"] = {"value": ratio, "goal": f">= {want}", "met": ratio >= want,
                                      "engine": args.engine}  # fmt: skip
        goals["wall_ratio_wsinfer_over_ours"] = theirs["wall_s"] / ours["wall_s"]
        if ours["cpu_s"] and theirs["cpu_s"]:
            goals["tiles_per_cpu_s_ratio"] = ours["tiles_per_cpu_s"] / theirs["tiles_per_cpu_s"]
        result["agreement"] = agreement(ours, theirs)
    exact = ours if args.engine == "fp32" else fp32
    if exact and theirs:
        agree = agreement(exact, theirs)
        result["agreement" if exact is ours else "agreement_fp32"] = agree
        worst = agree["max_abs_diff"]
        met = worst is not None and worst <= 1e-3
        goals["probability_max_abs_diff"] = {"value": worst, "goal": "<= 1e-3", "met": met,
                                             "engine": "fp32"}  # fmt: skip
    if fp32 and theirs:
        goals["fp32_tiles_per_s_ratio"] = fp32["tiles_per_s"] / theirs["tiles_per_s"]
        if fp32["cpu_s"] and theirs["cpu_s"]:
            goals["fp32_tiles_per_cpu_s_ratio"] = (
                fp32["tiles_per_cpu_s"] / theirs["tiles_per_cpu_s"]
            )
    if ours and fp32:
        result["engine_agreement"] = engine_agreement(ours, fp32, threshold)
        goals["int8_over_fp32_tiles_per_s"] = ours["tiles_per_s"] / fp32["tiles_per_s"]
    if ours and dense:
        ratio = dense["wall_s"] / ours["wall_s"]
        goals["dense_over_stride96"] = {"value": ratio, "goal": "<= 1.5", "met": ratio <= 1.5}
        if dense["cpu_s"] and ours["cpu_s"]:
            goals["dense_over_stride96_cpu"] = dense["cpu_s"] / ours["cpu_s"]
    return goals


def main() -> None:
    args = parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    truth, mask96, tissue96 = load_truth(args.truth)
    load = os.getloadavg()
    result: dict[str, Any] = {"machine": machine(), "load_before": load, "engine": args.engine,
                              "slide": str(args.slide), "checkpoint": args.checkpoint}  # fmt: skip
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    with open(args.slide, "rb") as f:  # both sides start with the slide in the page cache
        while f.read(1 << 24):
            pass
    model, config, info = export_for_wsinfer(args.checkpoint, args.work / "wsinfer-model")
    result["model"] = info
    if args.score_only:
        runs = previous_runs(args, result)
    else:
        runs = race(args, model, config, truth["cell_px"])
    best = {key: median_run(r) for key, r in runs.items() if r}
    strides = {"ours": args.stride, "wsinfer": args.stride, "ours_fp32": args.stride,
               "dense": args.dense_stride}  # fmt: skip
    for key, run in best.items():
        score = accuracy(run, strides[key], truth, mask96, tissue96, info["threshold"])
        result[key] = {**strip(run), "accuracy": score}
    result["goals"] = goals_of(args, best, info["threshold"], result)
    result.setdefault("load_after", os.getloadavg())
    print(f"load average after: {' '.join(f'{x:.2f}' for x in result['load_after'])}")
    text = json.dumps(result, indent=1, default=float)
    if args.json:
        Path(args.json).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
