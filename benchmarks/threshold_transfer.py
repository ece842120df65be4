"""Does a threshold chosen on validation hold on patches it was not chosen on?

    python benchmarks/threshold_transfer.py RUN|PREDICTIONS.csv [--splits 50]

Reads ``RUN/val_predictions.csv`` (or the ``predictions.csv`` of ``metastasis evaluate``: columns
truth, probability). Each of ``--splits`` seeded stratified splits into halves chooses the
threshold on one half (``metastasis.metrics.thresholds.select_threshold``, as
``train --threshold-method`` does) and measures it on the other. Per method, a Markdown row: the
held-out sensitivity and specificity (mean and standard deviation over the splits), how often the
held-out sensitivity fell below a screening method's target, and the mean gap between the
sensitivity where the threshold was chosen and where it was measured (the optimism), plus the
5-fold cross-fitted estimate that ``train`` records (``threshold_transfer`` in ``metrics.json``)
on the whole set.

PCam's validation patches share slides, so halves of it are closer to each other than new
patients are: these gaps are a lower bound on what a new hospital's patches show.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from _common import halves

from metastasis.metrics.thresholds import cross_fitted_operating_point, select_threshold

METHODS = (
    "youden",
    "bagged:youden",
    "sensitivity:0.9",
    "screening:0.9",
    "sensitivity:0.95",
    "screening:0.95",
)


def rates(y: np.ndarray, p: np.ndarray, t: float) -> tuple[float, float]:
    """Sensitivity and specificity at ``p >= t``."""
    hit = p >= t
    return float(hit[y == 1].mean()), float(1 - hit[y == 0].mean())


def row(y: np.ndarray, p: np.ndarray, method: str, splits: int) -> str:
    """One Markdown row for ``method`` over ``splits`` splits."""
    held, gaps = [], []
    for seed in range(splits):
        choose, measure = halves(y, seed)
        t, _ = select_threshold(y[choose], p[choose], method)
        held.append(rates(y[measure], p[measure], t))
        gaps.append(rates(y[choose], p[choose], t)[0] - held[-1][0])
    sens, spec = np.array(held).T
    target = float(method.rsplit(":", 1)[1]) if method.startswith(("sens", "screen")) else None
    below = f"{np.mean(sens < target):.0%}" if target is not None else "-"
    cf = cross_fitted_operating_point(y, p, method)
    return (
        f"| `{method}` | {sens.mean():.3f} ± {sens.std():.3f} | {spec.mean():.3f} ± "
        f"{spec.std():.3f} | {below} | {np.mean(gaps):+.3f} | "
        f"{cf['cross_fitted_sensitivity']:.3f} / {cf['cross_fitted_specificity']:.3f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("predictions", type=Path, help="run folder, or a predictions CSV")
    ap.add_argument("--splits", type=int, default=50, help="number of seeded splits into halves")
    args = ap.parse_args()
    path = args.predictions
    preds = pd.read_csv(path / "val_predictions.csv" if path.is_dir() else path)
    y, p = preds["truth"].to_numpy(), preds["probability"].to_numpy(dtype=np.float64)
    print(
        f"{len(y)} patches ({int(y.sum())} tumour); {args.splits} stratified splits into halves: "
        "chosen on one, measured on the other"
    )
    print()
    print(
        "| method | held-out sensitivity | held-out specificity | held-out sensitivity below "
        "target | optimism (sensitivity) | 5-fold cross-fitted sensitivity / specificity |"
    )
    print("|---|---|---|---|---|---|")
    for method in METHODS:
        print(row(y, p, method, args.splits))


if __name__ == "__main__":
    main()
