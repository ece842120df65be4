"""Goal 3: wall time from the raw JPEG folders to validation ROC-AUC >= target, ours vs Keras.

    python benchmarks/time_to_auc.py --data ../shared/data/pcam-jpeg \\
        --keras-python /path/to/tf-venv/bin/python [--config configs/fast-cpu.yaml] \\
        [--target 0.90] [--reference-epochs 15] [--threads 2] [--json OUT]

Runs, one after the other on the same machine and threads: the Keras reference
(``seed_keras.py``: load the JPEGs, train, score the validation set after each epoch) and
``metastasis train`` with ``--config`` from an empty cache folder (so the JPEG decoding is
counted). Each clock starts when the process starts (imports included) and stops at the first
epoch line whose validation AUC reaches the target; the process is then stopped. Prints each
side's time, epochs and the ratio ours / reference (the goal: <= 0.5).
"""

from __future__ import annotations

import argparse
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


def first_to_target(rows, target: float) -> dict:  # type: ignore[no-untyped-def]
    history = []
    for t, row in rows:
        history.append({"t": round(t, 1), **{k: row[k] for k in ("epoch", "val_auc")}})
        if row["val_auc"] >= target:
            return {
                "reached": True,
                "seconds": round(t, 1),
                "epochs": row["epoch"],
                "history": history,
            }
    return {"reached": False, "seconds": None, "epochs": len(history), "history": history}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--data", required=True, help="folder with train/ and valid/ (0/ and 1/ inside)"
    )
    ap.add_argument(
        "--config", default=str(Path(__file__).parents[1] / "configs" / "fast-cpu.yaml")
    )
    ap.add_argument("--target", type=float, default=0.90)
    ap.add_argument("--reference-epochs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-reference", action="store_true", help="time ours only (to try recipes)")
    ap.add_argument("--json")
    add_reference_options(ap)
    args = ap.parse_args()
    data = Path(args.data)
    result: dict = {"machine": machine(), "target": args.target, "config": args.config}

    if not args.skip_reference:
        print("reference (Keras):", flush=True)
        lines = stream(reference_cmd(args, data, args.reference_epochs))
        try:
            result["reference"] = first_to_target(reference_epochs(lines), args.target)
        finally:
            lines.close()  # stops the process once the target is reached

    print("ours (metastasis):", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        lines = stream(our_train_cmd(data, tmp, args.threads, "--config", args.config))
        try:
            result["ours"] = first_to_target(our_epochs(lines), args.target)
        finally:
            lines.close()

    ref, ours = result.get("reference"), result["ours"]
    if ref and ref["reached"] and ours["reached"]:
        result["ratio_ours_over_reference"] = round(ours["seconds"] / ref["seconds"], 3)
    save(result, args.json)


if __name__ == "__main__":
    main()
