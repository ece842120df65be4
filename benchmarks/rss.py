"""Run a command and report its wall time and peak anonymous memory (RssAnon, whole process tree).

    python benchmarks/rss.py [--interval 0.25] [--json OUT] -- metastasis train ...

Samples /proc/PID/status of the command and all its descendants (DataLoader workers, decode
processes) and prints one JSON line: wall seconds, exit status, peak summed RssAnon and peak
RssAnon of the main process, in GiB. Linux only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def rss_anon_kib(pid: int) -> int:
    """RssAnon of one process in KiB (0 once it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(cmd: list[str], interval: float = 0.25) -> dict[str, object]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak_tree = peak_main = 0
    samples: list[tuple[float, int]] = []
    while proc.poll() is None:
        main = rss_anon_kib(proc.pid)
        tree = sum(rss_anon_kib(p) for p in _tree(proc.pid))
        peak_main, peak_tree = max(peak_main, main), max(peak_tree, tree)
        samples.append((round(time.perf_counter() - start, 2), tree))
        time.sleep(interval)
    gib = 1024**2
    return {
        "command": " ".join(cmd),
        "returncode": proc.returncode,
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_rss_anon_gib": round(peak_tree / gib, 3),
        "peak_rss_anon_main_gib": round(peak_main / gib, 3),
        "samples": samples,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--interval", type=float, default=0.25)
    ap.add_argument("--json", help="also write the result, with all samples, to this file")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("no command given")
    result = run(cmd, args.interval)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}))
    sys.exit(int(result["returncode"] or 0))  # type: ignore[call-overload]


if __name__ == "__main__":
    main()
