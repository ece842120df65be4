"""Foundation-encoder embedding throughput, and probe training time on cached embeddings.

    python benchmarks/encoder_throughput.py [--threads 2] [--out result.json]
        [--archs vit_small_patch16_224,vit_large_patch16_224] [--batches 1,8,32]
        [--vit-l-batches 2] [--probe-n 19170] [--probe-dim 1024]

Random weights of the real architectures (timm ViT-S/16 and ViT-L/16, 224 px; the time does
not depend on the weights), patches/s of the encoder alone (``metastasis.encoders.Encoder``,
CLS token): PyTorch eager in float32 at each batch size, bf16 autocast on one small batch (on a
CPU without native bf16 it is emulated: shown, not recommended), and ONNX Runtime float32
(the graph ``metastasis export`` would write). CPU seconds are given beside wall seconds (the
machine may be shared). Then the probe: ``engine.probe.fit_probe`` on random N x D embeddings
(random labels), seconds per epoch and for one seed's ``--probe-epochs`` epochs.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import time
from typing import Any

import numpy as np
import torch

from metastasis.encoders.backbone import build_encoder
from metastasis.encoders.registry import get_encoder_spec
from metastasis.encoders.weights import resolve_weights


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(fn: Any, n_batches: int, batch: int) -> dict[str, float]:
    fn()  # warm-up (not timed)
    wall, cpu = time.perf_counter(), _cpu()
    for _ in range(n_batches):
        fn()
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    n = n_batches * batch
    return {
        "patches": n,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "patches_per_s": round(n / wall, 2),
        "patches_per_cpu_s": round(n / cpu, 2),
    }


def bench_arch(arch: str, batches: list[int], n_batches: int, threads: int) -> list[dict[str, Any]]:
    spec = get_encoder_spec(f"timm:{arch}")
    torch.manual_seed(0)
    enc = build_encoder(spec, resolve_weights(spec, "random"))
    rows = []
    for b in batches:
        x = torch.randn(b, 3, 224, 224)
        with torch.inference_mode():
            r = _timed(lambda x=x: enc(x), n_batches, b)
        rows.append({"arch": arch, "runtime": "torch eager", "dtype": "float32", "batch": b, **r})
    b = min(batches)
    x = torch.randn(b, 3, 224, 224)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        r = _timed(lambda: enc(x), 1, b)
    rows.append({"arch": arch, "runtime": "torch eager", "dtype": "bf16 autocast", "batch": b, **r})
    rows += _onnx(enc, arch, max(batches), n_batches, threads)
    return rows


def _onnx(
    enc: torch.nn.Module, arch: str, b: int, n_batches: int, threads: int
) -> list[dict[str, Any]]:
    import onnxruntime as ort

    buf = io.BytesIO()
    x = torch.randn(b, 3, 224, 224)
    torch.onnx.export(
        enc, (x,), buf, input_names=["image"], output_names=["embedding"], dynamo=False
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    xn = x.numpy()
    with torch.inference_mode():
        diff = float(np.abs(sess.run(None, {"image": xn})[0] - enc(x).numpy()).max())
    r = _timed(lambda: sess.run(None, {"image": xn}), n_batches, b)
    return [
        {
            "arch": arch,
            "runtime": "onnxruntime",
            "dtype": "float32",
            "batch": b,
            "max_abs_diff": diff,
            **r,
        }
    ]


def bench_probe(n: int, dim: int, epochs: int) -> dict[str, Any]:
    from metastasis.engine.probe import fit_probe

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    y = rng.integers(0, 2, n)
    xv, yv = x[: n // 7], y[: n // 7]
    wall, cpu = time.perf_counter(), _cpu()
    p = fit_probe(x, y, xv, yv, max_epochs=epochs, seed=0)
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    return {
        "probe": "linear",
        "n": n,
        "dim": dim,
        "epochs_run": p.epochs,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "s_per_epoch": round(wall / p.epochs, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--archs", default="vit_small_patch16_224,vit_large_patch16_224")
    ap.add_argument("--batches", default="1,8,32", help="batch sizes (ViT-S)")
    ap.add_argument("--n-batches", type=int, default=3, help="timed batches per batch size")
    ap.add_argument("--vit-l-batches", default="8", help="batch sizes of the large models")
    ap.add_argument("--probe-n", type=int, default=19170)
    ap.add_argument("--probe-dim", type=int, default=1024)
    ap.add_argument("--probe-epochs", type=int, default=100)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    for arch in args.archs.split(","):
        large = "small" not in arch and "tiny" not in arch
        batches = [int(b) for b in (args.vit_l_batches if large else args.batches).split(",")]
        for row in bench_arch(arch, batches, 1 if large else args.n_batches, args.threads):
            print(json.dumps(row), flush=True)
            rows.append(row)
    probe = bench_probe(args.probe_n, args.probe_dim, args.probe_epochs)
    print(json.dumps(probe), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"threads": args.threads, "encoders": rows, "probe": probe}, fh, indent=1)


if __name__ == "__main__":
    main()
