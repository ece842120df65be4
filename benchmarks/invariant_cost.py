"""What D4 invariance costs: the P4M model's single view against other models' 8-view TTA.

    python benchmarks/invariant_cost.py --data ../shared/data/pcam-jpeg/valid [--n 1024]
        [--engine onnxruntime|torch] [--repeats 3] [--json OUT]

Each model (random weights: the time does not depend on them) predicts the same real patches
through ``Predictor`` with the given engine: ``p4m-cnn`` with one view (``tta none``, which is
what ``d4`` becomes for it), the seed's ``baseline-cnn`` and ``regularised-cnn`` (``best-cpu``'s
architecture, with its 4th block) with 8-view TTA (``tta d4``) and with one view. Times are
medians over the repeats, wall and CPU seconds. Also printed: how far the P4M model's logits over
the 8 dihedral views of the real patches are from each other (float32), which is what makes its
TTA free.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import machine

from metastasis.data.cache import open_split
from metastasis.inference.predictor import Predictor
from metastasis.models import create_model, default_preprocessing
from metastasis.transforms.augment import d4_view

CASES = (  # (label, model, kwargs, tta)
    ("p4m-cnn, 1 view (D4-invariant)", "p4m-cnn", {}, "none"),
    ("baseline-cnn, 8-view TTA", "baseline-cnn", {}, "d4"),
    ("regularised-cnn 4th block (best-cpu), 8-view TTA", "regularised-cnn",
     {"fourth_block": True}, "d4"),
    ("baseline-cnn, 1 view", "baseline-cnn", {}, "none"),
    ("regularised-cnn 4th block (best-cpu), 1 view", "regularised-cnn",
     {"fourth_block": True}, "none"),
)  # fmt: skip


def _patches(data: str, n: int) -> np.ndarray:
    split = open_split(data, None, ("valid", "train"), progress=False)
    rows = split.usable_indices()[:n]
    return np.ascontiguousarray(split.images[rows])


def _time(predictor: Predictor, images: np.ndarray, repeats: int) -> dict[str, float]:
    predictor.predict_proba(images[:64])  # warm-up: engine start, caches
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        predictor.predict_proba(images)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    wall = statistics.median(walls)
    return {"wall_s": wall, "cpu_s": statistics.median(cpus), "patches_per_s": len(images) / wall}


def _view_spread(images: np.ndarray) -> float:
    """Largest |logit difference| between the 8 dihedral views of the P4M model (float32)."""
    torch.manual_seed(0)
    model = create_model("p4m-cnn").eval()
    prep = default_preprocessing("p4m-cnn")
    x = torch.from_numpy(images[:256])
    with torch.inference_mode():
        stacked = torch.stack([model(prep(d4_view(x, k))) for k in range(8)])
    return float((stacked - stacked[0]).abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help="a folder of patches (any layout)")
    ap.add_argument("--n", type=int, default=1024, help="patches to predict")
    ap.add_argument("--engine", default="onnxruntime", choices=["onnxruntime", "torch"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    images = _patches(args.data, args.n)
    result: dict[str, Any] = {**machine(), "n": len(images), "engine": args.engine, "rows": []}
    for label, name, kwargs, tta in CASES:
        torch.manual_seed(0)
        model = create_model(name, **kwargs)
        predictor = Predictor(model, default_preprocessing(name), tta=tta, engine=args.engine)
        row = {"case": label, "tta": tta, **_time(predictor, images, args.repeats)}
        print(json.dumps(row), flush=True)
        result["rows"].append(row)
    result["p4m_view_spread"] = _view_spread(images)
    print(json.dumps({"p4m_max_logit_spread_over_8_views": result["p4m_view_spread"]}))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
