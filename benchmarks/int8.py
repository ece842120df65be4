"""float32 against int8, per runtime: patches/s, validation ROC-AUC and parity of probabilities.

    python benchmarks/int8.py --data ../shared/data/pcam-jpeg \
        --checkpoint /work/models/fast-cpu [--checkpoint RUN ...] \
        [--recipe configs/baseline_cnn.yaml ...] [--threads 2] [--batch-size 256] \
        [--calibration 300] [--repeats 3] [--only ort-fp32,ort-qdq-u8s8 ...]

``--data`` holds ``train/`` (calibration: ``--calibration`` patches spread evenly over it) and
``valid/`` (timing, ROC-AUC, parity). ``--checkpoint`` runs a trained model; ``--recipe`` an
untrained one built from a recipe's architecture (speed does not depend on the weights; ROC-AUC
and parity do). Variants: ONNX Runtime float32, ONNX Runtime static quantization (QDQ and
QOperator formats, u8/s8 activations, with and without reduce_range), OpenVINO float32 and
OpenVINO + NNCF post-training quantization (when ``openvino`` and ``nncf`` are installed).
Every variant is timed over the whole validation split, batch by batch, ``--repeats`` times
(best and median patches/s, with the process CPU seconds). One JSON line per variant.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import machine
from sklearn.metrics import roc_auc_score

from metastasis.checkpoint import load_checkpoint
from metastasis.config import TrainConfig
from metastasis.data.cache import open_split
from metastasis.export.onnx import onnx_bytes, onnx_session
from metastasis.models import create_model, default_preprocessing
from metastasis.transforms.presets import Preprocessing

Runner = Callable[[np.ndarray], np.ndarray]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def spread(n_total: int, n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n_total - 1, min(n, n_total)).round().astype(int))


def load(source: str, kind: str) -> tuple[str, torch.nn.Module, Preprocessing, float]:
    """(name, float32 model, preprocessing, temperature) of a checkpoint or a recipe."""
    if kind == "checkpoint":
        bundle = load_checkpoint(source)
        name = f"{Path(source).name} ({bundle.arch})"
        return name, bundle.build_model().float(), bundle.preprocessing, bundle.temperature
    cfg = TrainConfig.from_yaml(source) if hasattr(TrainConfig, "from_yaml") else None
    if cfg is None:
        import yaml

        raw = yaml.safe_load(Path(source).read_text())
        arch, kwargs = raw["model"], raw.get("model_kwargs") or {}
    else:
        arch, kwargs = cfg.model, dict(cfg.model_kwargs or {})
    torch.manual_seed(0)
    model = create_model(arch, **kwargs).eval()
    return f"{Path(source).stem} (untrained {arch})", model, default_preprocessing(arch), 1.0


def batches(x: np.ndarray, size: int) -> list[np.ndarray]:
    return [np.ascontiguousarray(x[i : i + size]) for i in range(0, len(x), size)]


def ort_runner(model: bytes | str, threads: int) -> Runner:
    session = onnx_session(model, threads)
    return lambda x: session.run(None, {"image": x})[0].reshape(-1)


class Reader:
    """ONNX Runtime's calibration data reader over float batches."""

    def __init__(self, calib: list[np.ndarray]) -> None:
        self.it = iter([{"image": b} for b in calib])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.it, None)


def ort_quantized(graph: bytes, calib: list[np.ndarray], fmt: str, act: str, reduce: bool) -> str:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    tmp = Path(tempfile.mkdtemp(prefix="int8-bench-"))
    (tmp / "fp32.onnx").write_bytes(graph)
    quant_pre_process(str(tmp / "fp32.onnx"), str(tmp / "pre.onnx"), skip_symbolic_shape=True)
    out = tmp / f"{fmt}-{act}-{reduce}.onnx"
    quantize_static(
        str(tmp / "pre.onnx"),
        str(out),
        Reader(calib),
        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
        per_channel=True,
        reduce_range=reduce,
        activation_type=QuantType.QUInt8 if act == "u8" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    return str(out)


def ov_runner(model: Any, threads: int) -> Runner:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        model,
        "CPU",
        {
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
        },
    )
    request = compiled.create_infer_request()
    return lambda x: np.asarray(request.infer({0: x})[0]).reshape(-1)


def ov_quantized(graph: bytes, calib: list[np.ndarray]) -> Any:
    import nncf
    import openvino as ov

    tmp = Path(tempfile.mkdtemp(prefix="int8-bench-ov-"))
    (tmp / "fp32.onnx").write_bytes(graph)
    model = ov.Core().read_model(str(tmp / "fp32.onnx"))
    one = [b[i : i + 1] for b in calib for i in range(len(b))]
    return nncf.quantize(
        model,
        nncf.Dataset(one),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(one),
    )


def nncf_onnx(graph: bytes, calib: list[np.ndarray]) -> str:
    """NNCF's quantization of the ONNX graph itself: a QDQ ONNX file (OpenVINO reads it)."""
    import nncf
    import onnx

    one = [{"image": b[i : i + 1]} for b in calib for i in range(len(b))]
    q = nncf.quantize(
        onnx.load_from_string(graph),
        nncf.Dataset(one),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(one),
    )
    out = Path(tempfile.mkdtemp(prefix="int8-bench-nncf-")) / "q.onnx"
    onnx.save(q, str(out))
    return str(out)


def timed(run: Runner, x: list[np.ndarray], repeats: int) -> dict[str, Any]:
    """Best and median patches/s over ``x`` and the process CPU seconds per 1,000 patches."""
    run(x[0])  # warm-up
    rates, cpus = [], []
    n = sum(len(b) for b in x)
    for _ in range(repeats):
        c0, t0 = _cpu(), time.perf_counter()
        for b in x:
            run(b)
        secs, cpu = time.perf_counter() - t0, _cpu() - c0
        rates.append(n / secs)
        cpus.append(cpu)
    return {
        "patches_per_s_best": round(max(rates), 1),
        "patches_per_s_median": round(statistics.median(rates), 1),
        "cpu_s_per_1000": round(1000 * min(cpus) / n, 3),
    }


Artifact = Any
Variant = tuple[Callable[[], Artifact], Callable[[Artifact, int], Runner]]


def variants(graph: bytes, calib: list[np.ndarray]) -> dict[str, Variant]:
    """name -> (build the model once, a runner of it at a thread count)."""
    v: dict[str, Variant] = {"ort-fp32": (lambda: graph, ort_runner)}
    for fmt, act, reduce in [
        ("qdq", "u8", False),
        ("qdq", "u8", True),
        ("qdq", "s8", False),
        ("qop", "u8", False),
        ("qop", "u8", True),
    ]:
        name = f"ort-{fmt}-{act}s8" + ("-rr" if reduce else "")
        v[name] = (
            lambda f=fmt, a=act, r=reduce: ort_quantized(graph, calib, f, a, r),  # type: ignore[misc]
            ort_runner,
        )
    try:
        import nncf  # noqa: F401
        import openvino as ov
    except ImportError:
        return v
    from metastasis.export.quantize import compiled_runner, quantize_onnx

    def ov_fp32() -> Any:
        tmp = Path(tempfile.mkdtemp(prefix="int8-bench-ov32-"))
        (tmp / "fp32.onnx").write_bytes(graph)
        return ov.Core().read_model(str(tmp / "fp32.onnx"))

    v["ov-fp32"] = (ov_fp32, ov_runner)
    # what the int8 engine runs (metastasis.export.quantize), calibrated in batches of 32
    v["ov-nncf-int8"] = (lambda: quantize_onnx(graph, np.concatenate(calib)), compiled_runner)
    v["ov-nncf-onnx-qdq"] = (lambda: ov.Core().read_model(nncf_onnx(graph, calib)), ov_runner)
    v["ov-ort-qdq-u8s8"] = (
        lambda: ov.Core().read_model(ort_quantized(graph, calib, "qdq", "u8", False)),
        ov_runner,
    )
    return v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with train/ and valid/")
    ap.add_argument("--checkpoint", action="append", default=[])
    ap.add_argument("--recipe", action="append", default=[])
    ap.add_argument("--threads", default="2", help="thread counts to time, e.g. 1,2")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--calibration", type=int, default=300)
    ap.add_argument("--time-patches", type=int, default=1024, help="patches of each timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", help="comma-separated variant names (ort-fp32 always runs)")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    torch.set_num_threads(max(threads))
    train = open_split(Path(args.data) / "train", progress=False)
    valid = open_split(Path(args.data) / "valid", progress=False)
    usable = train.usable_indices()
    calib_u8 = np.asarray(train.images[usable[spread(len(usable), args.calibration)]])
    rows = valid.usable_indices()
    valid_u8, labels = np.asarray(valid.images[rows]), valid.labels[rows]
    print(json.dumps({"machine": machine(), "threads": threads, "valid": len(rows)}), flush=True)
    sources = [(c, "checkpoint") for c in args.checkpoint] + [(r, "recipe") for r in args.recipe]
    only = set(args.only.split(",")) if args.only else None
    for source, kind in sources:
        name, model, pre, temperature = load(source, kind)
        graph = onnx_bytes(model.cpu().float(), pre.input_size)
        calib = batches(pre(torch.from_numpy(calib_u8)).numpy(), 32)
        valid_x = batches(pre(torch.from_numpy(valid_u8)).numpy(), args.batch_size)
        time_x = batches(np.concatenate(valid_x)[: args.time_patches], args.batch_size)
        ref: np.ndarray | None = None
        for variant, (build, runner) in variants(graph, calib).items():
            if only is not None and variant not in only and variant != "ort-fp32":
                continue
            t0, c0 = time.perf_counter(), _cpu()
            try:
                artifact = build()
            except Exception as err:  # report and go on with the other variants
                print(json.dumps({"model": name, "variant": variant, "error": str(err)[:300]}))
                continue
            row: dict[str, Any] = {"model": name, "variant": variant}
            row["build_cpu_s"] = round(_cpu() - c0, 1)
            row["build_s"] = round(time.perf_counter() - t0, 1)
            for t in threads:
                torch.set_num_threads(t)
                row[f"threads_{t}"] = timed(runner(artifact, t), time_x, args.repeats)
            run = runner(artifact, max(threads))
            p = 1 / (1 + np.exp(-np.concatenate([run(b) for b in valid_x]) / temperature))
            row["roc_auc"] = round(float(roc_auc_score(labels, p)), 4)
            if ref is None:
                ref = p
            else:
                d = np.abs(p - ref)
                row["max_abs_dp"] = round(float(d.max()), 4)
                row["p99_abs_dp"] = round(float(np.quantile(d, 0.99)), 4)
                row["label_flips"] = int(((p >= 0.5) != (ref >= 0.5)).sum())
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
