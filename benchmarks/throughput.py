"""Training and prediction throughput of a registered model on real or synthetic patches.

    python benchmarks/throughput.py --data ../shared/data/pcam-jpeg/train [--model baseline-cnn]
        [--batch-size 32] [--steps 60] [--precision 32-true|bf16-mixed] [--threads 2]

Reads patches through the cache (as training does) and prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from metastasis.data.cache import open_split
from metastasis.models import create_model, default_preprocessing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split")
    ap.add_argument("--model", default="baseline-cnn")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = open_split(args.data, args.split, ("train",), progress=False)
    rows = data.usable_indices()
    model = create_model(args.model).to(memory_format=torch.channels_last)
    pre = default_preprocessing(args.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    bf16 = args.precision == "bf16-mixed"
    rng = np.random.default_rng(0)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.sort(rng.choice(rows, n, replace=False))
        return torch.from_numpy(data.images[idx]), torch.from_numpy(
            data.labels[idx].astype(np.float32)
        )

    def train_step() -> None:
        x, y = batch(args.batch_size)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(pre(x)).float()
        loss = F.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    for _ in range(5):
        train_step()
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step()
    secs = time.perf_counter() - start
    common = {"model": args.model, "precision": args.precision, "threads": args.threads}
    print(
        json.dumps(
            {
                **common,
                "what": "train",
                "batch_size": args.batch_size,
                "patches_per_s": round(args.steps * args.batch_size / secs, 1),
            }
        )
    )

    model.eval()
    x, _ = batch(min(256, len(rows)))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model(pre(x))
        start = time.perf_counter()
        for _ in range(10):
            model(pre(x))
        secs = time.perf_counter() - start
    print(
        json.dumps(
            {
                **common,
                "what": "predict",
                "batch_size": len(x),
                "patches_per_s": round(10 * len(x) / secs, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
