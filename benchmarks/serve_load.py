"""Load test of `metastasis serve`: a live server on 127.0.0.1, a bounded asyncio client.

    python benchmarks/serve_load.py --checkpoint RUN --data ../shared/data/pcam-jpeg/valid \
        [--requests 1000 --per-request 8 --concurrency 20 --max-batch 64 --json OUT]

Starts `metastasis serve` as a separate process on a free port, waits for /healthz, sends
``--warmup`` requests (not counted), then ``--requests`` POST /v1/predict requests of
``--per-request`` real patches each (multipart, files read into memory first) from
``--concurrency`` concurrent clients. Prints one JSON object: errors, latency percentiles,
patches/s, model calls and patches per call (the server's micro-batching), and the server
process's RSS (VmRSS and RssAnon) sampled every ``--interval`` seconds over the run.
The client shares the machine's cores with the server: on 2 cores it costs the server some.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) of one process in KiB; zeros once it has exited."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                fields[key] = int(value.split()[0])
    except OSError:
        pass
    return fields.get("VmRSS", 0), fields.get("RssAnon", 0)


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int, int]] = []
        self.stop = threading.Event()
        self.start_time = time.perf_counter()

    def run(self) -> None:
        while not self.stop.is_set():
            vm, anon = rss_kib(self.pid)
            self.samples.append((time.perf_counter() - self.start_time, vm, anon))
            self.stop.wait(self.interval)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(args: argparse.Namespace, port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "metastasis",
        "serve",
        "--checkpoint",
        args.checkpoint,
        "--port",
        str(port),
        "--engine",
        args.engine,
        "--max-batch",
        str(args.max_batch),
    ]
    env = {k: v for k, v in os.environ.items() if k != "METASTASIS_API_KEY"}
    with log.open("wb") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            return dict(httpx.get(url + "/healthz", timeout=2).json())
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("the server did not answer /healthz in time")


async def load(
    url: str, payloads: list[list[tuple[str, bytes]]], n: int, concurrency: int
) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    next_index = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker() -> None:
            for i in next_index:
                files = [("files", f) for f in payloads[i % len(payloads)]]
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/predict", files=files)
                    ok = r.status_code == 200 and len(r.json()["predictions"]) == len(files)
                    if not ok:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    ap.add_argument("--data", required=True, help="folder of real patches (searched recursively)")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--per-request", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--max-batch", type=int, default=64, help="the server's --max-batch")
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--interval", type=float, default=0.5, help="RSS sampling interval (s)")
    ap.add_argument("--log", default="/tmp/serve_load_server.log", help="the server's output")
    ap.add_argument("--json", help="also write the result, with the RSS samples, here")
    args = ap.parse_args()

    files = sorted(p for p in Path(args.data).rglob("*") if p.suffix.lower() in {".jpg", ".png"})
    need = args.per_request * 100
    if len(files) < args.per_request:
        raise SystemExit(f"{args.data}: fewer than {args.per_request} images")
    chosen = files[:: max(1, len(files) // need)][:need]
    blobs = [(p.name, p.read_bytes()) for p in chosen]
    payloads = [blobs[i : i + args.per_request] for i in range(0, len(blobs), args.per_request)]
    payloads = [p for p in payloads if len(p) == args.per_request]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t_start = time.perf_counter()
    proc = start_server(args, port, Path(args.log))
    try:
        health = wait_ready(url, proc)
        startup_s = time.perf_counter() - t_start
        asyncio.run(load(url, payloads, args.warmup, args.concurrency))
        calls_before = httpx.get(url + "/healthz").json()
        sampler = RssSampler(proc.pid, args.interval)
        sampler.start()
        t0, server_cpu0, client_cpu0 = (
            time.perf_counter(),
            cpu_seconds(proc.pid),
            time.process_time(),
        )
        latencies, errors = asyncio.run(load(url, payloads, args.requests, args.concurrency))
        wall = time.perf_counter() - t0
        server_cpu = cpu_seconds(proc.pid) - server_cpu0
        client_cpu = time.process_time() - client_cpu0
        load_avg = os.getloadavg()[0]
        sampler.stop.set()
        sampler.join()
        calls_after = httpx.get(url + "/healthz").json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    lat = np.asarray(latencies) * 1000
    calls = calls_after["model_calls"] - calls_before["model_calls"]
    patches = calls_after["patches"] - calls_before["patches"]
    rss = np.asarray([s[1] for s in sampler.samples]) / 1024
    anon = np.asarray([s[2] for s in sampler.samples]) / 1024
    tenth = max(1, len(rss) // 10)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "engine": health["engine"],
        "max_batch": args.max_batch,
        "requests": args.requests,
        "per_request": args.per_request,
        "concurrency": args.concurrency,
        "errors": len(errors),
        "first_errors": errors[:3],
        "startup_s": round(startup_s, 2),
        "wall_s": round(wall, 2),
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 1),
            "p90": round(float(np.percentile(lat, 90)), 1),
            "p99": round(float(np.percentile(lat, 99)), 1),
            "max": round(float(lat.max()), 1),
        },
        "requests_per_s": round(args.requests / wall, 1),
        "patches_per_s": round(args.requests * args.per_request / wall, 1),
        "server_cpu_s": round(server_cpu, 1),
        "server_cpu_ms_per_patch": round(1000 * server_cpu / (args.requests * args.per_request), 2),
        "client_cpu_s": round(client_cpu, 1),
        "cores": os.cpu_count(),
        "load_average_1min_at_end": round(load_avg, 1),
        "model_calls": calls,
        "patches_per_call": round(patches / max(calls, 1), 1),
        "rss_mib": {
            "first_tenth_mean": round(float(rss[:tenth].mean()), 1),
            "last_tenth_mean": round(float(rss[-tenth:].mean()), 1),
            "min": round(float(rss.min()), 1),
            "max": round(float(rss.max()), 1),
        },
        "rss_anon_mib": {
            "first_tenth_mean": round(float(anon[:tenth].mean()), 1),
            "last_tenth_mean": round(float(anon[-tenth:].mean()), 1),
            "max": round(float(anon.max()), 1),
        },
        "rss_samples": len(rss),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(
            json.dumps({**result, "samples_s_vmrss_kib_anon_kib": sampler.samples}, indent=1)
        )
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
