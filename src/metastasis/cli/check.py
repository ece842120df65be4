"""Counts per class and every problem found: ids in the CSV without a file, files without a
label, duplicate ids, labels outside {0,1}, unreadable, wrong-sized or non-RGB images, exact
pixel duplicates (also across splits)."""

from __future__ import annotations

import argparse

from metastasis.cli.common import add_data_options, progress

ORDER = 10
HELP = "integrity report of a data set"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="Kaggle folder, PCam .h5 folder/file, or class folders 0/ 1/")
    p.add_argument("--split", help="check only this split (default: every split)")
    p.add_argument("--strict", action="store_true", help="exit 1 when anything is wrong")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON (default: none)")
    add_data_options(p)


def run(args: argparse.Namespace) -> int:
    from metastasis.data.checks import check_dataset
    from metastasis.data.layouts import open_layout
    from metastasis.io import atomic_write_json, check_outputs

    if args.json:
        check_outputs(files=[args.json], is_input=open_layout(args.data).is_input)
    report = check_dataset(args.data, args.split, args.cache_dir, progress=progress(args))
    print(report.format_text())
    if args.json:
        atomic_write_json(args.json, report.to_dict())
    return 1 if args.strict and not report.ok else 0
