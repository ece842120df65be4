"""Time to the first tiles on screen in `metastasis view`, for a 20,000 px slide.

    python benchmarks/viewer_first_tiles.py --data ../shared/data/pcam-jpeg/valid \\
        --work /tmp/viewer-bench [--checkpoint /work/models/fast-cpu] [--repeats 5]

1. writes a 20,000 px pyramidal JPEG TIFF mosaic of real patches (``make_mosaic_slide.py``;
   skipped when ``--slide`` is given or the file exists);
2. runs ``metastasis slides`` on it (the checkpoint given, else ``/work/models/fast-cpu`` when
   it has a checkpoint, else a tiny untrained CNN: the viewer's timings do not depend on the
   map's values; skipped when its output folder exists);
3. for each tile backend (``--tiles auto``: OpenSlide's Deep Zoom generator; ``reader``: the
   project's tifffile reader) starts ``metastasis view OUT`` as a separate process on a free
   port of 127.0.0.1 and loads the page ``--repeats`` times in headless Chromium (Debian's,
   via Playwright), each time in a fresh browser context (nothing cached). The first load
   after the server starts is "cold" (the slide is opened then), the others "warm".

Per load: milliseconds from navigation start to the first slide tile loaded, and to the first
view fully loaded (OpenSeadragon's ``fully-loaded-change``: every tile the view needs, drawn),
and the tiles requested; the server's CPU seconds over all loads. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
METASTASIS = [sys.executable, "-m", "metastasis"]
FAST_CPU = Path("/work/models/fast-cpu")
STATE = "window.metastasisViewer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tiny_checkpoint(path: Path) -> Path:
    import torch

    from metastasis.checkpoint import Bundle, save_checkpoint, state_dict_cpu
    from metastasis.models import create_model
    from metastasis.transforms.presets import PCAM_MPP, Preprocessing

    torch.manual_seed(0)
    model = create_model("baseline-cnn")
    bundle = Bundle("baseline-cnn", {}, state_dict_cpu(model), Preprocessing(mpp=PCAM_MPP), 0.5)
    return save_checkpoint(path, bundle)


def prepare(args: argparse.Namespace) -> tuple[Path, str]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    slide = Path(args.slide) if args.slide else work / "mosaic.tif"
    if not slide.exists():
        subprocess.run([sys.executable, str(HERE / "make_mosaic_slide.py"), "--data", args.data,
                        "--out", str(slide), "--size", str(args.size), "--mpp", "0.972"],
                       check=True)  # fmt: skip
    checkpoint = args.checkpoint
    if checkpoint is None:
        has_fast = (FAST_CPU / "checkpoint.pt").exists()
        checkpoint = str(FAST_CPU) if has_fast else str(tiny_checkpoint(work / "tiny.pt"))
    out = work / "out"
    if not (out / "slides.csv").exists():
        start = time.perf_counter()
        command = ["slides", str(slide), "--checkpoint", checkpoint, "--out", str(out)]
        subprocess.run([*METASTASIS, *command, "--no-progress"], check=True)
        print(f"slides: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return out, checkpoint


def load_once(browser: Any, url: str, timeout: float) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    tiles: list[str] = []
    page.on("request", lambda r: tiles.append(r.url) if "/slide_files/" in r.url else None)
    try:
        page.goto(url)
        deadline = time.monotonic() + timeout
        while not page.evaluate(f"!!({STATE} && {STATE}.fullyLoadedMs !== null)"):
            if time.monotonic() > deadline:
                raise RuntimeError("the first view did not load")
            time.sleep(0.005)
        first, full = page.evaluate(f"[{STATE}.firstTileMs, {STATE}.fullyLoadedMs]")
        return {"first_tile_ms": round(first), "fully_loaded_ms": round(full),
                "tiles_requested": len(tiles)}  # fmt: skip
    finally:
        context.close()


def run_backend(out: Path, backend: str, args: argparse.Namespace, browser: Any) -> dict[str, Any]:
    import httpx

    port = free_port()
    proc = subprocess.Popen([*METASTASIS, "view", str(out), "--port", str(port), "--tiles",
                             backend], stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        cpu0 = cpu_seconds(proc.pid)
        loads = [load_once(browser, url + "/", args.timeout) for _ in range(args.repeats)]
        cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    warm = loads[1:] or loads
    return {
        "backend": backend,
        "cold": loads[0],
        "warm_first_tile_ms_median": statistics.median(x["first_tile_ms"] for x in warm),
        "warm_fully_loaded_ms_median": statistics.median(x["fully_loaded_ms"] for x in warm),
        "loads": loads,
        "server_cpu_s": round(cpu, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared/data/pcam-jpeg/valid"))
    ap.add_argument("--work", default="/tmp/viewer-bench")
    ap.add_argument("--slide", help="an existing slide (default: WORK/mosaic.tif, made if absent)")
    ap.add_argument("--size", type=int, default=20000)
    ap.add_argument("--checkpoint")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--backends", default="auto,reader")
    ap.add_argument("--json")
    args = ap.parse_args()
    out, checkpoint = prepare(args)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                     args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        try:
            results = [run_backend(out, b, args, browser) for b in args.backends.split(",")]
        finally:
            browser.close()
    report = {"slide_out": str(out), "checkpoint": checkpoint, "repeats": args.repeats,
              "load_average": os.getloadavg(), "results": results}  # fmt: skip
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
