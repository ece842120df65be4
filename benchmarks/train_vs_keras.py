"""Goal 1: training throughput of the seed's CNN, ours vs the Keras reference, same data and work.

    python benchmarks/train_vs_keras.py --data ../shared/data/pcam-jpeg \\
        --keras-python /path/to/tf-venv/bin/python [--epochs 3] [--batch-size 32] \\
        [--threads 2] [--json OUT]

Runs one after the other: the reference (``seed_keras.py``: batch 32, flips, Adam 1e-3) and
``metastasis train --model baseline-cnn --augment flips`` with the same batch size, optimiser,
epochs and threads, in float32 and with bfloat16 autocast. Training throughput is each epoch's
training patches per second (the validation pass is not in it, for either side). Prints the
per-epoch rates, their means (all epochs; and from epoch 2, after warm-up), the ratios ours /
reference (the goal: >= 1.0) and the validation AUC after the last epoch of each run (bf16
must stay within 0.01 of float32).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from _common import (
    add_reference_options,
    machine,
    our_epochs,
    our_train_cmd,
    reference_cmd,
    reference_epochs,
    save,
    stream,
)


def summary(rows: list[dict]) -> dict:
    rates = [r["train_img_per_s"] for r in rows]
    return {
        "per_epoch_patches_per_s": rates,
        "mean_patches_per_s": round(statistics.mean(rates), 1),
        "mean_from_epoch_2": round(statistics.mean(rates[1:] or rates), 1),
        "val_auc_per_epoch": [round(r["val_auc"], 4) for r in rows],
        "final_val_auc": round(rows[-1]["val_auc"], 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--data", required=True, help="folder with train/ and valid/ (0/ and 1/ inside)"
    )
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    add_reference_options(ap)
    args = ap.parse_args()
    data = Path(args.data)
    result: dict = {
        "machine": machine(),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "threads": args.threads,
    }

    print("reference (Keras):", flush=True)
    cmd = reference_cmd(args, data, args.epochs, "--batch", str(args.batch_size))
    result["reference"] = summary([r for _, r in reference_epochs(stream(cmd))])

    for precision in ("bf16-mixed", "32-true"):
        print(f"ours (metastasis, {precision}):", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            cmd = our_train_cmd(data, tmp, args.threads, "--model", "baseline-cnn", "--augment",
                                "flips", "--optimizer", "adam", "--lr", "0.001", "--batch-size",
                                str(args.batch_size), "--epochs", str(args.epochs),
                                "--precision", precision)  # fmt: skip
            result[f"ours_{precision}"] = summary([r for _, r in our_epochs(stream(cmd))])

    ref = result["reference"]
    for precision in ("bf16-mixed", "32-true"):
        ours = result[f"ours_{precision}"]
        ours["ratio_over_reference"] = round(
            ours["mean_patches_per_s"] / ref["mean_patches_per_s"], 3
        )
        ours["ratio_over_reference_from_epoch_2"] = round(
            ours["mean_from_epoch_2"] / ref["mean_from_epoch_2"], 3
        )
    result["bf16_auc_minus_fp32_auc"] = round(
        result["ours_bf16-mixed"]["final_val_auc"] - result["ours_32-true"]["final_val_auc"], 4
    )
    save(result, args.json)


if __name__ == "__main__":
    main()
