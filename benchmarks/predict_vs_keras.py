"""Goal 2: prediction, ours vs the Keras reference, end to end and for the raw model.

    python benchmarks/predict_vs_keras.py --data ../shared/data/pcam-jpeg/valid \\
        --keras-python /path/to/tf-venv/bin/python [--checkpoint RUN] [--repeats 3] \\
        [--threads 2] [--json OUT]

1. End to end, as users run it, on DATA (0/ and 1/ sub-folders of JPEGs):
   the reference's ``seed_keras.py --predict-only`` times loading the images plus building the
   model plus ``model.predict``; ours times ``predict_to_csv`` (what ``metastasis predict``
   runs: decode into a fresh, empty cache + the engine + the CSV), after the imports (ONNX
   Runtime and the ONNX exporter included), as the reference's clock starts after its imports:
   once with the default (exact) engine and once with ``--engine torch-bf16``. All are run
   ``--repeats`` times, each in a new process; medians are reported, and the process wall
   times (imports included) too. ``floor_ratio`` is the raw float32 inference time alone (2.,
   the fastest exact engine) over the reference's whole time: what the exact path's ratio
   would be if decoding and set-up took no time.
2. Raw model, float32, batch 256, the same number of random patches: Keras ``model.predict``
   against each of our engines, and the largest logit difference of each from PyTorch eager.
3. With ``--checkpoint`` (any trained model) and labelled DATA: ROC-AUC with the exact default
   engine and with ``torch-bf16`` (bf16 may be offered if AUC moves by at most 0.002).
The timings use the seed's CNN, untrained, on both sides (speed does not depend on weights).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
from _common import METASTASIS, add_reference_options, machine, save

OURS_E2E = """
import sys, time, tempfile, json
from metastasis.inference.predict import predict_to_csv
import onnxruntime, torch.onnx  # noqa: F401  (imports, like the reference's tensorflow, keras)
t = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp:
    table = predict_to_csv(sys.argv[1], sys.argv[2], tmp + "/p.csv", cache_dir=tmp + "/cache",
                           progress=False, engine=sys.argv[3])
print(json.dumps({"n": len(table), "wall_s": time.perf_counter() - t}))
"""

KERAS_RAW = """
import sys, time, json
import numpy as np, tensorflow as tf, keras
tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[3]))
tf.config.threading.set_inter_op_parallelism_threads(1)
sys.path.insert(0, sys.argv[1])
from seed_keras import build_model
m = build_model(keras)
x = np.random.default_rng(0).random((int(sys.argv[2]), 96, 96, 3), dtype=np.float32)
m.predict(x, batch_size=256, verbose=0)
best = 0.0
for _ in range(3):
    t = time.perf_counter(); m.predict(x, batch_size=256, verbose=0)
    best = max(best, len(x) / (time.perf_counter() - t))
print(json.dumps({"patches_per_s": best}))
"""


def last_json(cmd: list[str]) -> tuple[dict, float]:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - start
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1]), wall


def untrained_checkpoint(folder: Path) -> Path:
    from metastasis.checkpoint import Bundle, save_checkpoint, state_dict_cpu
    from metastasis.models import create_model, default_preprocessing

    torch.manual_seed(0)
    model = create_model("baseline-cnn")
    bundle = Bundle(
        "baseline-cnn", {}, state_dict_cpu(model), default_preprocessing("baseline-cnn")
    )
    return save_checkpoint(folder / "checkpoint.pt", bundle)


def raw_ours(checkpoint: Path, n: int) -> dict:
    from metastasis.checkpoint import load_checkpoint
    from metastasis.inference.runtime import make_engine

    bundle = load_checkpoint(checkpoint)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 96, 96, 3), dtype=torch.uint8, generator=g)
    x = bundle.preprocessing(images)
    batches = [x[i : i + 256] for i in range(0, n, 256)]
    reference = torch.cat(
        [
            make_engine(bundle.build_model(), bundle.preprocessing, torch.device("cpu"), "torch")(b)
            for b in batches
        ]
    )
    out = {}
    for name in ("onnxruntime", "torch", "torch-bf16"):
        engine = make_engine(bundle.build_model(), bundle.preprocessing, torch.device("cpu"), name)
        engine(batches[0])
        best, logits = 0.0, None
        for _ in range(3):
            t = time.perf_counter()
            logits = torch.cat([engine(b) for b in batches])
            best = max(best, n / (time.perf_counter() - t))
        assert logits is not None
        diff = float((logits - reference).abs().max())
        out[name] = {"patches_per_s": round(best, 1), "max_abs_logit_diff": float(f"{diff:.3g}")}
    return out


def auc_by_engine(checkpoint: str, data: str) -> dict:
    from metastasis.data.cache import open_split
    from metastasis.inference.predictor import Predictor
    from metastasis.metrics.classification import binary_metrics

    cached = open_split(data, progress=False)
    idx = cached.usable_indices()
    out = {}
    for engine in ("auto", "torch-bf16"):
        predictor = Predictor.from_checkpoint(checkpoint, device="cpu", engine=engine)
        probs, labels = predictor.predict_split(cached, idx, progress=False)
        out[predictor.engine.name] = round(binary_metrics(labels, probs)["roc_auc"], 5)
    values = list(out.values())
    out["difference"] = round(abs(values[0] - values[1]), 5)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--checkpoint")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    add_reference_options(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n = sum(1 for p in Path(args.data).glob("*/*") if p.is_file())
    result: dict = {"machine": machine(), "data": args.data, "n": n, "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = untrained_checkpoint(Path(tmp))  # the reference's model, for the timings
        ref_cmd = [
            args.keras_python,
            args.reference,
            "--train",
            "-",
            "--valid",
            "-",
            "--predict-only",
            args.data,
            "--threads",
            str(args.threads),
        ]
        ours_cmd = [sys.executable, "-c", textwrap.dedent(OURS_E2E), str(checkpoint), args.data]
        ref, ours, ours_bf16 = [], [], []
        for _ in range(args.repeats):  # interleaved, so that drifts in machine speed hit all
            ref.append(last_json(ref_cmd))
            ours.append(last_json([*ours_cmd, "auto"]))
            ours_bf16.append(last_json([*ours_cmd, "torch-bf16"]))
        cli_start = time.perf_counter()
        subprocess.run(
            [
                *METASTASIS,
                "predict",
                "--checkpoint",
                str(checkpoint),
                "--data",
                args.data,
                "--out",
                f"{tmp}/cli.csv",
                "--cache-dir",
                f"{tmp}/cli-cache",
                "--no-progress",
            ],
            check=True,
            capture_output=True,
        )
        cli_wall = time.perf_counter() - cli_start
        ref_s = statistics.median(r["wall_s"] for r, _ in ref)
        ours_s = statistics.median(o["wall_s"] for o, _ in ours)
        bf16_s = statistics.median(o["wall_s"] for o, _ in ours_bf16)
        result["end_to_end"] = {
            "reference_s": round(ref_s, 2),
            "ours_s": round(ours_s, 2),
            "ratio_ours_over_reference": round(ours_s / ref_s, 3),
            "reference_runs_s": [round(r["wall_s"], 2) for r, _ in ref],
            "ours_runs_s": [round(o["wall_s"], 2) for o, _ in ours],
            "reference_process_s": round(statistics.median(w for _, w in ref), 2),
            "ours_process_s": round(statistics.median(w for _, w in ours), 2),
            "ours_cli_process_s": round(cli_wall, 2),
            "ours_torch_bf16_s": round(bf16_s, 2),
            "ratio_torch_bf16_over_reference": round(bf16_s / ref_s, 3),
            "ours_torch_bf16_runs_s": [round(o["wall_s"], 2) for o, _ in ours_bf16],
        }
        keras, _ = last_json(
            [
                args.keras_python,
                "-c",
                textwrap.dedent(KERAS_RAW),
                str(Path(args.reference).parent),
                str(n),
                str(args.threads),
            ]
        )
        ours_raw = raw_ours(checkpoint, n)
        result["raw_model"] = {
            "keras_fp32_patches_per_s": round(keras["patches_per_s"], 1),
            **ours_raw,
            "ratio_onnxruntime_over_keras": round(
                ours_raw["onnxruntime"]["patches_per_s"] / keras["patches_per_s"], 3
            ),
        }
        exact = max(ours_raw[e]["patches_per_s"] for e in ("onnxruntime", "torch"))
        result["end_to_end"]["floor_ratio"] = round(n / exact / ref_s, 3)
        if args.checkpoint:
            result["roc_auc_by_engine"] = auc_by_engine(args.checkpoint, args.data)
    save(result, args.json)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
