"""Where the time of a ``metastasis slides`` run goes: a table of phases, wall and CPU seconds.

    python benchmarks/slides_phases.py --slide /tmp/fixed-bench/mosaic.tif \\
        --checkpoint RUN --code src --code /tmp/old-main/src --repeats 3 --json out.json

Each ``--code`` is a source tree (this worktree's ``src`` and, for a before/after, an older
checkout's); for each, ``metastasis slides SLIDE --checkpoint RUN --out OUT --stride 96
--no-progress`` runs as a process from an empty output folder (runs interleaved, ``--repeats``
times; medians reported). Inside the process the functions of each phase are wrapped with
timers (``--child``; nothing in the package changes; each module is wrapped when the package
imports it, so that what the package imports lazily stays lazy): the wall and CPU seconds of
each call are summed by phase. CPU: the process's CPU time for phases of the main thread
(other threads' concurrent work included), the thread's own for phases of the reader and
writer threads (ONNX Runtime's compute threads are counted only in the process CPU of "read +
classify"). "imports and parsing" is the time from the process start to the first phase;
"outside the slide", the whole process's wall time less the slide's own (its ``summary.json``).
The whole run's wall and CPU seconds are measured from outside (``resource.getrusage`` of the
children).
"""

from __future__ import annotations

import argparse
import functools
import importlib.abc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

# (phase, module, attribute): "Class.method" attributes wrap a method
PHASES = [
    ("model + engine", "metastasis.slides.classify", "SlideClassifier.from_checkpoint"),
    ("open + geometry", "metastasis.slides.analyse", "make_geometry"),
    ("thumbnail read", "metastasis.slides.analyse", "read_thumbnail"),
    ("tissue mask", "metastasis.slides.analyse", "tissue_mask"),
    ("read + classify", "metastasis.slides.analyse", "_classify_blocks"),
    ("regions", "metastasis.slides.analyse", "find_lesions"),
    ("tiles.csv table", "metastasis.slides.outputs", "tiles_table"),
    ("PNG encoding", "metastasis.slides.outputs", "_png"),
    ("heatmap figure", "metastasis.slides.heatmap", "heatmap_figure"),
    ("heatmap PNG", "matplotlib.figure", "Figure.savefig"),
    ("GeoJSON", "metastasis.slides.outputs", "feature_collection"),
    ("slide outputs (all)", "metastasis.slides.outputs", "write_slide_outputs"),
    ("tables + report", "metastasis.slides.run", "write_tables"),
    ("inside the slide", "metastasis.slides.run", "analyse_slide"),
]
SUMS: dict[str, list[float]] = {}
LOCK = threading.Lock()


def _timed(name: str, fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        main = threading.current_thread() is threading.main_thread()
        clock = time.process_time if main else time.thread_time
        t, c = time.perf_counter(), clock()
        try:
            return fn(*args, **kwargs)
        finally:
            with LOCK:
                s = SUMS.setdefault(name, [0, 0.0, 0.0, time.perf_counter()])
                s[0] += 1
                s[1] += time.perf_counter() - t
                s[2] += clock() - c
                s[3] = min(s[3], t)

    return wrapper


def _wrap(module: str) -> None:
    """Wrap the phases of ``module`` (just imported) where they are looked up."""
    mod = sys.modules[module]
    for name, where, attr in PHASES:
        if where != module:
            continue
        owner: Any = mod
        parts = attr.split(".")
        for part in parts[:-1]:
            owner = getattr(owner, part)
        fn = getattr(owner, parts[-1], None)
        if fn is None:
            continue
        if isinstance(owner.__dict__.get(parts[-1]), classmethod):
            setattr(owner, parts[-1], classmethod(_timed(name, fn.__func__)))
        else:
            setattr(owner, parts[-1], _timed(name, fn))


class _WrapOnImport(importlib.abc.MetaPathFinder):
    """Wraps a phase's module as soon as it is imported, so that the timers import nothing
    themselves: modules the package imports lazily stay lazy (and their import is timed where
    the package pays it)."""

    def __init__(self, modules: set[str]) -> None:
        self.modules = modules

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.modules:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_wrap(module: Any) -> None:
            exec_module(module)
            _wrap(fullname)

        spec.loader.exec_module = exec_and_wrap
        return spec


def install() -> None:
    """Wrap each phase's function where it is looked up (module attribute or method), in
    modules imported already now, in the others when they are imported."""
    modules = {module for _, module, _ in PHASES}
    for module in sorted(modules & set(sys.modules)):
        _wrap(module)
    sys.meta_path.insert(0, _WrapOnImport(modules - set(sys.modules)))


def child(argv: list[str], t0: float, out_json: str) -> int:
    from metastasis.cli import main

    install()
    code = main(argv)
    end = time.time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    first = min((s[3] for s in SUMS.values()), default=time.perf_counter())
    first_wall = end - (time.perf_counter() - first)
    phases = {k: {"calls": v[0], "wall_s": v[1], "cpu_s": v[2]} for k, v in SUMS.items()}
    phases["imports and parsing"] = {"calls": 1, "wall_s": first_wall - t0, "cpu_s": None}
    Path(out_json).write_text(
        json.dumps({"phases": phases, "wall_s": end - t0, "cpu_s": usage.ru_utime + usage.ru_stime})
    )
    return code


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(code: str, args: argparse.Namespace, k: int) -> dict[str, Any]:
    out = Path(args.work) / f"out-{k}"
    shutil.rmtree(out, ignore_errors=True)
    phases = Path(args.work) / f"phases-{k}.json"
    env = dict(os.environ, PYTHONPATH=str(Path(code).resolve()))
    cmd = [sys.executable, __file__, "--child", str(phases), "--t0", "T0", "--",
           "slides", *args.slide, "--checkpoint", args.checkpoint, "--out", str(out),
           "--stride", str(args.stride), "--engine", args.engine, "--no-progress",
           "-q"]  # fmt: skip
    cmd = [c for c in cmd if c != "-q"]
    c0, t = children_cpu(), time.time()
    cmd[cmd.index("T0")] = repr(t)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall, cpu = time.time() - t, children_cpu() - c0
    if proc.returncode:
        raise RuntimeError(f"{code}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    result = json.loads(phases.read_text())
    result.update(process_wall_s=wall, process_cpu_s=cpu, code=code)
    summary = json.loads(next(out.glob("*/summary.json")).read_text())
    result["tiles"] = summary["tiles_classified"]
    result["slide_seconds"] = summary["seconds"]
    return result


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    codes = list(results)
    names = ["imports and parsing"] + [p for p, _, _ in PHASES]
    head = "| phase | " + " | ".join(f"{c}: wall s | {c}: CPU s" for c in codes) + " |"
    lines = [head, "|---" * (1 + 2 * len(codes)) + "|"]

    def med(rs: list[dict[str, Any]], f: Any) -> str:
        vals = [f(r) for r in rs]
        vals = [v for v in vals if v is not None]
        return f"{statistics.median(vals):.2f}" if vals else "-"

    for n in names:
        cells = []
        for c in codes:
            rs = results[c]
            cells.append(med(rs, lambda r, n=n: r["phases"].get(n, {}).get("wall_s")))
            cells.append(med(rs, lambda r, n=n: r["phases"].get(n, {}).get("cpu_s")))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    cells = []
    for c in codes:
        cells.append(med(results[c], lambda r: r["process_wall_s"]))
        cells.append(med(results[c], lambda r: r["process_cpu_s"]))
    lines.append("| **whole process** | " + " | ".join(cells) + " |")
    cells = []
    for c in codes:
        cells.append(med(results[c], lambda r: r["process_wall_s"] - r["slide_seconds"]))
        cells.append("")
    lines.append("| outside the slide (whole - inside) | " + " | ".join(cells) + " |")
    cells = []
    for c in codes:
        cells.append(med(results[c], lambda r: r["process_wall_s"] / r["slide_seconds"]))
        cells.append("")
    lines.append("| end to end / inside the slide | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slide", nargs="+", help="slide file(s) or folder")
    ap.add_argument("--checkpoint")
    ap.add_argument("--code", action="append", default=[], help="a source tree (repeatable)")
    ap.add_argument("--stride", type=int, default=96)
    ap.add_argument("--engine", default="auto", help="--engine of metastasis slides (int8, ...)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--work", default="/tmp/slides-phases")
    ap.add_argument("--json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.rest, args.t0, args.child)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in args.code or ["src"]}
    k = 0
    for _ in range(args.repeats):
        for code in results:
            results[code].append(run_once(code, args, k))
            k += 1
            r = results[code][-1]
            print(f"{code}: {r['process_wall_s']:.2f} s wall, {r['process_cpu_s']:.2f} CPU s, "
                  f"{r['tiles']} tiles, {r['slide_seconds']:.2f} s inside the slide, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
