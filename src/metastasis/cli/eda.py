"""Exploratory data analysis: class balance per split, integrity (the `check` findings plus
near-duplicates by perceptual hash), image statistics by class (RGB/HSV, brightness, saturation,
background, focus) with blank, background-only and blurry patches flagged, the central 32x32
label region against its ring, typical and atypical patches, and a PCA map. Writes
report.html, the PNG figures, eda.json (every number shown) and flagged.csv (the patches worth
leaving out of training, by id: `train --exclude DIR/flagged.csv`) into --out."""

from __future__ import annotations

import argparse

from metastasis.cli.common import add_data_options, progress

ORDER = 15
HELP = "exploratory data analysis report (HTML + PNG + JSON)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="Kaggle folder, PCam .h5 folder/file, or class folders 0/ 1/")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--split", help="only this split (default: every split; image statistics on train)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random sample grids")
    add_data_options(p)


def run(args: argparse.Namespace) -> int:
    from metastasis.eda.report import write_eda_report

    result = write_eda_report(
        args.data, args.out, args.split, args.cache_dir, progress=progress(args), seed=args.seed
    )
    for name, s in result["class_balance"]["splits"].items():
        counts = ", ".join(
            f"label {k}: {v:,}" if k in ("0", "1") else f"{k}: {v:,}"
            for k, v in s["counts"].items()
        )
        print(f"{name}: {s['n']:,} patches ({counts})")
    integrity = result["integrity"]
    found = [
        f"{f['kind']} {f['count']:,}"
        for findings in (*integrity["splits"].values(), integrity["across_splits"])
        for f in findings
    ]
    flags = result["image_statistics"]["flags"]
    found += [f"{k} {v['count']:,}" for k, v in flags.items() if v["count"]]
    near = integrity["near_duplicates"]["extra_copies"]
    found += [f"near_duplicates {near:,}"] if near else []
    print(f"findings: {', '.join(found) if found else 'none'}")
    flagged = result["flagged"]
    print(f"flagged: {flagged['count']:,} patches in {args.out}/{flagged['file']} (for --exclude)")
    print(f"report: {args.out}/report.html ({result['seconds']} s)")
    return 0
