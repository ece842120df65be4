"""Options shared by several commands."""

from __future__ import annotations

import argparse


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir", help="cache folder (default $METASTASIS_CACHE or ~/.cache/metastasis)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "no_progress", False)
