"""The training recipes shipped with the package, one line each: name, model, epochs and the
validation numbers measured with it (the README's recipe table), and the search spaces. Any
folder: `metastasis train --config NAME`, `metastasis tune --space NAME`."""

from __future__ import annotations

import argparse

ORDER = 82
HELP = "list the shipped training recipes (for --config NAME) with their measured numbers"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from metastasis.config import (
        RECIPES,
        SEARCH_SPACES,
        measured,
        resolve_config,
        shipped_recipes,
    )

    recipes = shipped_recipes()
    width = max(map(len, recipes), default=0)
    for name, path in recipes.items():
        cfg = resolve_config(path)
        numbers = measured(path) or "not measured"
        print(f"{name:{width}s}  {cfg.model:16s} {cfg.epochs:3d} epochs  {numbers}")
    spaces = ", ".join(shipped_recipes(SEARCH_SPACES))
    print(f"search spaces (tune --space NAME): {spaces}")
    print(f"files: {RECIPES}; use one from any folder: metastasis train --config NAME ...")
    return 0
