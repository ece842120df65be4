"""The decision threshold's trade-off: sensitivity against specificity on validation predictions.

    python benchmarks/threshold_tradeoff.py RUN|PREDICTIONS.csv [--seed N]

Reads ``RUN/val_predictions.csv`` (the run's best checkpoint on its validation set) or the
``predictions.csv`` of ``metastasis evaluate`` (columns truth, probability). The set is split
in two stratified halves (seeded): each method chooses its threshold on one half
(``metastasis.metrics.thresholds.select_threshold``, as ``train --threshold-method`` does) and
is measured on the other, so the numbers are not the optimistic ones of choosing and measuring
on the same patches. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from _common import halves

from metastasis.metrics.classification import binary_metrics
from metastasis.metrics.thresholds import select_threshold

METHODS = ("fixed:0.5", "youden", "sensitivity:0.9", "sensitivity:0.95", "sensitivity:0.99")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("predictions", type=Path, help="run folder, or a predictions CSV")
    ap.add_argument("--seed", type=int, default=0, help="seed of the split into halves")
    args = ap.parse_args()
    path = args.predictions
    preds = pd.read_csv(path / "val_predictions.csv" if path.is_dir() else path)
    y, p = preds["truth"].to_numpy(), preds["probability"].to_numpy()
    choose, measure = halves(y, args.seed)
    n_pos, n_neg = int(y[measure].sum()), int((1 - y[measure]).sum())
    print(
        f"{len(y)} validation patches; threshold chosen on {len(choose)}, measured on "
        f"{len(measure)} ({n_pos} tumour, {n_neg} normal); "
        f"ROC-AUC on the measured half {binary_metrics(y[measure], p[measure])['roc_auc']:.4f}"
    )
    print()
    print(
        "| method | threshold | sensitivity | specificity | missed tumour patches | false alarms |"
    )
    print("|---|---|---|---|---|---|")
    for method in METHODS:
        t, _ = select_threshold(y[choose], p[choose], method)
        m = binary_metrics(y[measure], p[measure], t)
        fn = round((1 - m["sensitivity"]) * n_pos)
        fp = round((1 - m["specificity"]) * n_neg)
        print(
            f"| `{method}` | {t:.3f} | {m['sensitivity']:.3f} | {m['specificity']:.3f} "
            f"| {fn} of {n_pos} | {fp} of {n_neg} |"
        )


if __name__ == "__main__":
    main()
