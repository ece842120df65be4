"""Goal 5: does the data path keep the model fed? Loader alone, loader + augmentation, full step.

    python benchmarks/data_path.py --data ../shared/data/pcam-jpeg/train [--model baseline-cnn]
        [--batch-size 32] [--augment flips] [--precision bf16-mixed] [--steps 200] [--json OUT]

Builds the training input path the way ``metastasis train`` does (the memory-mapped uint8
cache, ``PatchDataset.__getitems__`` reading each batch in one slice, the DataLoader with the
worker count ``engine.environment.loader_workers`` picks, augmentation and preprocessing on
whole batches) and times, in patches/s: the loader alone; the loader plus augmentation and
preprocessing; and the whole training step. The share of the step spent getting data is
``step rate / input rate``. Also prints the thread and worker settings a run records in its
``environment.json``.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from _common import machine, save
from torch.utils.data import DataLoader

from metastasis.data.cache import open_split
from metastasis.data.dataset import PatchDataset, passthrough
from metastasis.engine.environment import loader_workers
from metastasis.models import create_model, default_preprocessing
from metastasis.transforms.augment import Augmenter, augment_spec


def rate(batches, steps: int, work) -> float:  # type: ignore[no-untyped-def]
    it = iter(batches)
    for _ in range(5):
        work(*next(it))
    n, start = 0, time.perf_counter()
    for _ in range(steps):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(batches)
            x, y = next(it)
        work(x, y)
        n += len(y)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="baseline-cnn")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--augment", default="flips")
    ap.add_argument("--precision", default="bf16-mixed", choices=["32-true", "bf16-mixed"])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    data = open_split(args.data, None, ("train",), progress=False)
    workers = loader_workers(device)
    loader = DataLoader(
        PatchDataset(data, data.usable_indices()),
        batch_size=args.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        collate_fn=passthrough,
        num_workers=workers,
    )
    augment = Augmenter(augment_spec(args.augment))
    pre = default_preprocessing(args.model)
    gen = torch.Generator().manual_seed(0)
    model = create_model(args.model).to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    bf16 = args.precision == "bf16-mixed"

    def nothing(x: torch.Tensor, y: torch.Tensor) -> None:
        pass

    def prepare(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return pre(augment(x, gen))

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            logits = model(prepare(x, y)).float()
        loss = F.binary_cross_entropy_with_logits(logits, y.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    loader_rate = rate(loader, args.steps, nothing)
    input_rate = rate(loader, args.steps, prepare)
    step_rate = rate(loader, args.steps, step)
    save(
        {
            "machine": machine(),
            "settings": {
                "torch_threads": torch.get_num_threads(),
                "torch_interop_threads": torch.get_num_interop_threads(),
                "loader_workers": workers,
                "batch_size": args.batch_size,
                "augment": args.augment,
                "precision": args.precision,
                "model": args.model,
            },
            "loader_patches_per_s": round(loader_rate, 1),
            "loader_augment_preprocess_patches_per_s": round(input_rate, 1),
            "train_step_patches_per_s": round(step_rate, 1),
            "share_of_step_getting_data": round(step_rate / input_rate, 3),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
