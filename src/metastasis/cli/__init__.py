"""The `metastasis` command: parse options, import lazily, call one API function.

Each sub-command is one module in this package with ``ORDER`` (position in ``--help``),
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; modules are found automatically,
so adding a command means adding a file. Problems with data, options or checkpoints end with
one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from metastasis.errors import MetastasisError


def command_modules() -> dict[str, ModuleType]:
    """Sub-command name -> module, in ``--help`` order."""
    mods = []
    for info in pkgutil.iter_modules(__path__):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "run") and hasattr(mod, "add_arguments"):
            mods.append(mod)
    mods.sort(key=lambda m: (getattr(m, "ORDER", 100), m.__name__))
    return {getattr(m, "NAME", m.__name__.rsplit(".", 1)[1]): m for m in mods}


class _DefaultsHelp(argparse.HelpFormatter):
    """``--help`` shows each option's default, where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        # identity, not ==: a default of 0 (a seed) is shown, only None / False / SUPPRESS are not
        hidden = default is None or default is False or default is argparse.SUPPRESS
        shown = not hidden and action.option_strings
        if shown and "default" not in text:
            text += " (default: %(default)s)"
        return text


def installed_version() -> str:
    """The installed package's version (its metadata), else the source's ``__version__``."""
    from importlib import metadata

    try:
        return metadata.version("metastasis")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        from metastasis import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metastasis",
        description="Detect metastatic cancer in 96x96 H&E lymph-node patches (PCam / Kaggle).",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--version", action="version", version=f"metastasis {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, mod in command_modules().items():
        p = sub.add_parser(
            name, help=mod.HELP, description=mod.__doc__, formatter_class=_DefaultsHelp
        )
        mod.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(command_modules()[args.command].run(args) or 0)
    except MetastasisError as exc:
        print(f"metastasis {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # what the system refused where no layer put it into words
        from metastasis.io import os_problem

        where = f"{exc.filename}: " if exc.filename else ""
        print(f"metastasis {args.command}: error: {where}{os_problem(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"metastasis {args.command}: interrupted", file=sys.stderr)
        return 130
