"""Training and prediction throughput on a GPU (or whatever device is there), on synthetic patches.

    PYTHONPATH=src python3 benchmarks/gpu_throughput.py --out benchmarks/out [--quick]
    bash benchmarks/gpu.sh [--quick]    # prints the GPU and versions, then this under a timeout

What a cached training run does on a GPU, with the package's own pieces: uint8 NHWC batches
from a pinned host tensor (random patches, standing in for the cache's memory map), copied with
``non_blocking=True`` by ``engine.loop.train_one_epoch`` / ``inference.batches.predict``, then
augmented (``transforms.augment``, preset ``d4`` by default: no kornia needed) and preprocessed
(``default_preprocessing(model)``) on the device. Models are ``create_model(name)`` with random
weights, in channels_last, with Adam and ``cudnn.benchmark``; bf16 is ``torch.autocast`` around
the model's forward (as Fabric's ``bf16-mixed`` does). Warm-up steps are not timed, the device
is synchronised before each clock read, and every measurement is time-boxed (``--seconds``).

Also measured: the host->device copy rate of uint8 batches (pinned, pageable, and a sorted
fancy-index gather + pin + copy as the DataLoader does with no workers), peak device memory per
configuration, the cost of the augmentation presets, and ``torch.compile`` prediction for
baseline-cnn (skipped with ``--quick``). Results are rewritten after every measurement into
``gpu_throughput.json`` and ``gpu_throughput.md`` in ``--out``, so a run that is cut off still
leaves what it measured (``"complete": false``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metastasis.engine.loop import train_one_epoch
from metastasis.inference.batches import predict
from metastasis.models import create_model, default_preprocessing
from metastasis.models.timm_backbones import BACKBONES
from metastasis.transforms.augment import Augmenter, augment_spec

MODELS = ("baseline-cnn", "regularised-cnn", "resnet18", "efficientnet_b0")
CPU_QUICK_MODELS = ("baseline-cnn", "regularised-cnn")
PRECISIONS = ("fp32", "bf16")
MIB = 2**20


class Autocast(nn.Module):
    """Runs the wrapped model's forward under ``torch.autocast`` (what Fabric's precision does)."""

    def __init__(self, module: nn.Module, device_type: str, enabled: bool) -> None:
        super().__init__()
        self.module, self.device_type, self.enabled = module, device_type, enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.enabled):
            out: torch.Tensor = self.module(x)
        return out


class Batches:
    """``(images, labels)`` slices of host tensors, ``warmup`` of them then as many as fit in
    ``seconds`` (at least ``min_steps``, at most ``max_steps``); ``timed`` counts the latter."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch: int) -> None:
        self.images, self.labels, self.batch = images, labels, batch
        self.pos = 0

    def take(self, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(steps):
            yield self._next()

    def until(
        self, start: float, seconds: float, min_steps: int, max_steps: int, count: list[int]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while count[0] < max_steps and (
            count[0] < min_steps or time.perf_counter() - start < seconds
        ):
            count[0] += 1
            yield self._next()

    def _next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos + self.batch > len(self.images):
            self.pos = 0
        s = slice(self.pos, self.pos + self.batch)
        self.pos += self.batch
        return self.images[s], self.labels[s]


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / MIB, 1)
    return None


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device_type": device.type,
        "device_name": platform.processor() or platform.machine(),
    }
    try:
        import timm

        env["timm"] = timm.__version__
    except ImportError:
        env["timm"] = None
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(
            device_name=p.name,
            capability=f"{p.major}.{p.minor}",
            multiprocessors=p.multi_processor_count,
            device_memory_mib=round(p.total_memory / MIB),
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            float32_matmul_precision=torch.get_float32_matmul_precision(),
        )
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            env["driver"] = smi.stdout.strip().splitlines()[0] if smi.stdout.strip() else None
        except (OSError, subprocess.SubprocessError):
            env["driver"] = None
    elif device.type == "mps":
        env["device_name"] = "Apple MPS"
    return env


def copy_rates(
    images: torch.Tensor, device: torch.device, batch: int, seconds: float
) -> dict[str, Any]:
    """Host->device patches/s for uint8 batches: pinned, pageable, and gather + pin + copy."""
    if device.type == "cpu":
        return {"note": "device is the CPU: no host->device copy"}
    patch_bytes = images[0].numel()
    pageable = images[: 4 * batch].clone()  # a clone lives in ordinary (pageable) memory
    host = images.numpy()
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {
        "batch": batch,
        "patch_bytes": patch_bytes,
        "pageable_is_pinned": pageable.is_pinned(),
    }

    def rate(make: Callable[[int], torch.Tensor]) -> dict[str, float]:
        for i in range(3):
            make(i).to(device, non_blocking=True)
        sync(device)
        n, start = 0, time.perf_counter()
        while n < 5 or time.perf_counter() - start < seconds:
            make(n).to(device, non_blocking=True)
            n += 1
        sync(device)
        secs = time.perf_counter() - start
        per_s = n * batch / secs
        return {"patches_per_s": round(per_s), "gb_per_s": round(per_s * patch_bytes / 1e9, 2)}

    nb = len(images) // batch
    out["pinned"] = rate(lambda i: images[(i % nb) * batch : (i % nb + 1) * batch])
    out["pageable"] = rate(lambda i: pageable[(i % 4) * batch : (i % 4 + 1) * batch])

    def gather(_: int) -> torch.Tensor:
        rows = np.sort(rng.choice(len(host), batch, replace=False))
        t = torch.from_numpy(host[rows])
        return t.pin_memory() if device.type == "cuda" else t

    out["gather_pin_copy"] = rate(gather)
    return out


class Bench:
    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.args, self.device = args, device
        self.t0 = time.perf_counter()
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.doc: dict[str, Any] = {
            "environment": environment(device),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "settings": {k: v for k, v in vars(args).items() if k != "out"},
            "copy": None,
            "results": [],
            "skipped": [],
            "complete": False,
        }
        n = args.patches
        pin = device.type == "cuda"
        start = time.perf_counter()
        self.images = torch.empty((n, 96, 96, 3), dtype=torch.uint8, pin_memory=pin)
        self.images.random_(0, 256, generator=torch.Generator().manual_seed(0))
        self.labels = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(1))
        if pin:
            self.labels = self.labels.pin_memory()
        self.doc["data"] = {
            "patches": n,
            "pinned": pin,
            "seconds_to_make": round(time.perf_counter() - start, 2),
        }
        self.gen = torch.Generator().manual_seed(2)  # augmentation draws, on the CPU as in fit()

    # ------------------------------------------------------------------ bookkeeping
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def over_budget(self, what: str, need: float = 0.0) -> bool:
        if self.elapsed() + need <= self.args.budget:
            return False
        self.doc["skipped"].append(f"{what}: time budget ({self.args.budget:.0f} s) spent")
        print(f"skip {what}: time budget spent", flush=True)
        self.write()
        return True

    def record(self, row: dict[str, Any]) -> None:
        self.doc["results"].append(row)
        print(
            f"{row['what']:7s} {row['model']:16s} batch {row['batch']:5d} {row['precision']:13s} "
            f"{row['patches_per_s']:12,.0f} patches/s"
            + (f"  peak {row['peak_mib']:,.0f} MiB" if row.get("peak_mib") is not None else "")
            + f"  ({row['steps']} steps, {row['seconds']:.1f} s) {row.get('note', '')}",
            flush=True,
        )
        self.write()

    def write(self) -> None:
        self.doc["total_seconds"] = round(self.elapsed(), 1)
        for name, text in (
            ("gpu_throughput.json", json.dumps(self.doc, indent=2) + "\n"),
            ("gpu_throughput.md", markdown(self.doc)),
        ):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.out / name)

    # ------------------------------------------------------------------ measurements
    def model(self, name: str) -> nn.Module:
        reset_memory(self.device)
        model = create_model(name, **({"pretrained": False} if name in BACKBONES else {}))
        return model.to(self.device, memory_format=torch.channels_last)

    def train(self, name: str, batch: int, precision: str, augment: str) -> None:
        args, device = self.args, self.device
        model = self.model(name)
        params = sum(p.numel() for p in model.parameters())
        net = Autocast(model, device.type, precision == "bf16")
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        pre = default_preprocessing(name)
        aug = Augmenter(augment_spec(augment))

        def prepare(x: torch.Tensor) -> torch.Tensor:
            return pre(aug(x, self.gen))

        data = Batches(self.images, self.labels, batch)
        train_one_epoch(net, data.take(args.warmup), opt, prepare, device=device)
        sync(device)
        count = [0]
        start = time.perf_counter()
        loop = data.until(start, args.seconds, args.min_steps, args.max_steps, count)
        res = train_one_epoch(net, loop, opt, prepare, device=device)
        sync(device)
        secs = time.perf_counter() - start
        row = self.row("train", name, batch, precision, count[0], secs, params)
        row.update(augment=augment, loss=round(res.loss, 4))
        if augment != self.args.augment:
            row["note"] = f"augment={augment}"
        self.record(row)

    def predict(self, name: str, batch: int, precision: str, compile_model: bool = False) -> None:
        args, device = self.args, self.device
        model = self.model(name).eval()
        params = sum(p.numel() for p in model.parameters())
        note = ""
        if compile_model:
            model = torch.compile(model, mode=args.compile_mode)  # type: ignore[assignment]
        net = Autocast(model, device.type, precision == "bf16")
        pre = default_preprocessing(name)
        data = Batches(self.images, self.labels, batch)
        start = time.perf_counter()
        predict(net, data.take(1), pre, device=device)
        sync(device)
        if compile_model:
            compile_s = time.perf_counter() - start
            note = f"compiled ({args.compile_mode}) in {compile_s:.0f} s"
        predict(net, data.take(max(args.warmup - 1, 0)), pre, device=device)
        sync(device)
        count = [0]
        start = time.perf_counter()
        loop = data.until(start, args.seconds, args.min_steps, args.max_steps, count)
        predict(net, loop, pre, device=device)
        sync(device)
        secs = time.perf_counter() - start
        label = f"{precision}+compile" if compile_model else precision
        row = self.row("predict", name, batch, label, count[0], secs, params)
        row["note"] = note
        if compile_model:
            row["compile_seconds"] = round(compile_s, 1)
        self.record(row)

    def row(
        self, what: str, name: str, batch: int, precision: str, steps: int, secs: float, params: int
    ) -> dict[str, Any]:
        return {
            "what": what,
            "model": name,
            "params": params,
            "batch": batch,
            "precision": precision,
            "patches_per_s": round(steps * batch / secs, 1),
            "ms_per_step": round(1000 * secs / steps, 2),
            "steps": steps,
            "seconds": round(secs, 2),
            "peak_mib": peak_mib(self.device),
        }

    def attempt(self, what: str, fn: Callable[[], None], need: float = 0.0) -> None:
        if self.over_budget(what, need):
            return
        try:
            fn()
        except Exception as exc:  # an OOM or an unsupported op must not end the whole run
            msg = f"{what}: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
            print(f"FAILED {msg}", flush=True)
            self.doc["skipped"].append(msg)
            self.write()
        finally:
            reset_memory(self.device)


def markdown(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    lines = [
        f"# Throughput on {env['device_name']} ({env['device_type']})",
        "",
        f"- date: {env['date']}; host {env['host']}, {env['cpu_count']} CPUs",
        f"- torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, timm {env['timm']}, "
        f"python {env['python']}" + (f", driver {env['driver']}" if env.get("driver") else ""),
        f"- command: `{doc['command']}`",
        f"- data: {doc['data']['patches']:,} random uint8 96x96x3 patches in "
        + ("pinned" if doc["data"]["pinned"] else "ordinary")
        + " host memory, copied a batch at a time (non_blocking)",
        f"- train: `engine.loop.train_one_epoch`, augmentation `{doc['settings']['augment']}` + "
        "the model's preprocessing on the device, Adam, channels_last, bf16 = autocast; "
        "predict: `inference.batches.predict` (copies each batch's logits back to the host); "
        "random weights; warm-up excluded; peak memory = torch.cuda.max_memory_allocated",
    ]
    copy = doc.get("copy")
    if copy and "pinned" in copy:
        lines.append(
            f"- host->device uint8 copy, batch {copy['batch']}: "
            + "; ".join(
                f"{k.replace('_', ' + ')} {copy[k]['patches_per_s']:,} patches/s "
                f"({copy[k]['gb_per_s']} GB/s)"
                for k in ("pinned", "pageable", "gather_pin_copy")
                if k in copy
            )
        )
    lines += [
        "",
        "| model | batch | precision | train patches/s | predict patches/s | ms/step "
        "| peak memory MiB | note |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in doc["results"]:
        rate = f"{r['patches_per_s']:,.0f}"
        peak = f"{r['peak_mib']:,.0f}" if r.get("peak_mib") is not None else "-"
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['precision']} "
            f"| {rate if r['what'] == 'train' else ''} | {rate if r['what'] == 'predict' else ''} "
            f"| {r['ms_per_step']} | {peak} | {r.get('note', '')} |"
        )
    if doc["skipped"]:
        lines += ["", "Skipped or failed:", *[f"- {s}" for s in doc["skipped"]]]
    state = "complete" if doc["complete"] else "INCOMPLETE (still running, cut off or failed)"
    lines += ["", f"{state}; {doc.get('total_seconds', 0)} s in all", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default="benchmarks/out")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test (CPU is fine)")
    ap.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, mps, cpu")
    ap.add_argument("--models", help=f"comma-separated; default {','.join(MODELS)}")
    ap.add_argument("--train-batch-sizes", help="comma-separated; default 256,512 (quick 16,32)")
    ap.add_argument("--predict-batch-size", type=int, help="default 1024 (quick 64)")
    ap.add_argument("--patches", type=int, help="synthetic patches held; default 20000 (quick 512)")
    ap.add_argument("--seconds", type=float, help="timed seconds per measurement; default 4")
    ap.add_argument("--warmup", type=int, help="untimed steps first; default 5 (quick 1)")
    ap.add_argument("--min-steps", type=int, help="default 10 (quick 2)")
    ap.add_argument("--max-steps", type=int, default=2000)
    ap.add_argument("--augment", default="d4", help="training augmentation preset (no kornia: d4)")
    ap.add_argument("--budget", type=float, help="start no measurement after this many seconds")
    ap.add_argument("--compile-mode", default="default", help="torch.compile mode for prediction")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    q = args.quick
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    default_models = CPU_QUICK_MODELS if q and device.type == "cpu" else MODELS
    args.models = args.models or ",".join(default_models)
    args.train_batch_sizes = args.train_batch_sizes or ("16,32" if q else "256,512")
    args.predict_batch_size = args.predict_batch_size or (64 if q else 1024)
    args.patches = args.patches or (512 if q else 20000)
    args.seconds = args.seconds if args.seconds is not None else (1.0 if q else 4.0)
    args.warmup = args.warmup if args.warmup is not None else (1 if q else 5)
    args.min_steps = args.min_steps if args.min_steps is not None else (2 if q else 10)
    args.budget = args.budget if args.budget is not None else (100.0 if q else 230.0)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    train_bs = [int(b) for b in args.train_batch_sizes.split(",")]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    bench = Bench(args, device)
    env = bench.doc["environment"]
    print(
        f"device {device} ({env['device_name']}), torch {env['torch']}, CUDA {env['cuda']}, "
        f"{args.patches:,} patches made in {bench.doc['data']['seconds_to_make']} s",
        flush=True,
    )
    if device.type != "cpu":
        copy_batch = max(train_bs)
        bench.doc["copy"] = copy_rates(bench.images, device, copy_batch, 0.5 if q else 1.5)
        c = bench.doc["copy"]
        print(
            f"copy   uint8 batch {copy_batch}: pinned {c['pinned']['patches_per_s']:,} patches/s "
            f"({c['pinned']['gb_per_s']} GB/s), pageable {c['pageable']['patches_per_s']:,}, "
            f"gather+pin+copy {c['gather_pin_copy']['patches_per_s']:,}",
            flush=True,
        )
    bench.write()

    pb = args.predict_batch_size
    for name in models:
        for bs in train_bs:
            for prec in PRECISIONS:
                bench.attempt(
                    f"train {name} batch {bs} {prec}",
                    partial(bench.train, name, bs, prec, args.augment),
                )
        for prec in PRECISIONS:
            bench.attempt(
                f"predict {name} batch {pb} {prec}",
                partial(bench.predict, name, pb, prec),
            )
    # What the augmentation costs: the first model, largest batch, bf16, other presets.
    for preset in ("none", "pathology"):
        if preset != args.augment:
            bench.attempt(
                f"train {models[0]} augment {preset}",
                partial(bench.train, models[0], max(train_bs), "bf16", preset),
            )
    if q or args.no_compile or device.type == "mps":
        bench.doc["skipped"].append("torch.compile prediction: skipped (--quick/--no-compile/mps)")
    else:
        for prec in PRECISIONS:
            bench.attempt(
                f"predict baseline-cnn batch {pb} {prec} torch.compile",
                partial(bench.predict, "baseline-cnn", pb, prec, compile_model=True),
                need=60.0,
            )
    bench.doc["complete"] = True
    bench.write()
    print("\n" + markdown(bench.doc), flush=True)
    print(f"wrote {bench.out / 'gpu_throughput.json'} and {bench.out / 'gpu_throughput.md'}")


if __name__ == "__main__":
    main()
