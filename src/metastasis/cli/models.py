"""The models in the registry, with a line about each."""

from __future__ import annotations

import argparse

ORDER = 80
HELP = "list registered models"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from metastasis.models import describe_models

    for name, doc in describe_models().items():
        print(f"{name:24s} {doc}")
    return 0
