"""The `metastasis` command: parse options, import lazily, call one API function.

Each sub-command is one module in this package with ``ORDER`` (position in ``--help``),
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; modules are found automatically,
so adding a command means adding a file. Problems with data, options or checkpoints end with
one line on stderr and exit status 2.

Start-up: ``main`` imports only the module of the command it runs; the other commands are
listed from their source (``ORDER``, ``HELP`` and ``NAME`` read with ``ast``, nothing imported),
so ``metastasis --help``, ``--version`` and ``metastasis predict ...`` do not pay for the
imports of ``train``, ``slides`` or ``serve`` (pandas, pydantic models, PyTorch).
``build_parser()`` with no argument still builds every command (the docs and tests use it).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import logging
import pkgutil
import sys
from collections.abc import Collection, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from metastasis.errors import MetastasisError

GLOBAL_FLAGS = ("-q", "--quiet")  # options before the command that take no value


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


def command_listing() -> dict[str, tuple[str, str]]:
    """Sub-command name -> (module name, help), in ``--help`` order, read from the sources
    without importing them (a command module that cannot be read so is imported)."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        meta = _constants(Path(__path__[0]) / f"{info.name}.py")
        if meta is None:  # not a plain source file: import it
            mod = importlib.import_module(f"{__name__}.{info.name}")
            if not (hasattr(mod, "run") and hasattr(mod, "add_arguments")):
                continue
            meta = {k: getattr(mod, k) for k in ("ORDER", "HELP", "NAME") if hasattr(mod, k)}
        elif not meta.pop("_is_command"):
            continue
        name = meta.get("NAME", info.name)
        found.append((meta.get("ORDER", 100), f"{__name__}.{info.name}", name, meta.get("HELP")))
    found.sort(key=lambda t: (t[0], t[1]))
    return {name: (module, text or "") for _, module, name, text in found}


def _constants(path: Path) -> dict[str, Any] | None:
    """ORDER, HELP and NAME of a command's source, and whether it defines ``run`` and
    ``add_arguments``; None where the source cannot be read or they are not plain values."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    out: dict[str, Any] = {}
    functions = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            functions.add(node.name)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("ORDER", "HELP", "NAME"):
                try:
                    out[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    return None
    out["_is_command"] = {"run", "add_arguments"} <= functions
    return out


def wanted_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first word after the global flags), if it names one."""
    for word in argv:
        if word in GLOBAL_FLAGS:
            continue
        return word if word in command_listing() else None
    return None


class _VersionAction(argparse.Action):
    """``--version``: the installed version, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str | None = None) -> None:  # fmt: skip
        super().__init__(option_strings, dest, nargs=0, default=default,
                         help=help or "show program's version number and exit")  # fmt: skip

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        parser._print_message(f"metastasis {installed_version()}\n", sys.stdout)
        parser.exit()


def installed_version() -> str:
    """The installed package's version (its metadata), else the source's ``__version__``."""
    from importlib import metadata

    try:
        return metadata.version("metastasis")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        from metastasis import __version__

        return __version__


def build_parser(commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or with ``commands`` of those only (the others are
    listed, with their help, but take no options: ``main`` parses one command)."""
    parser = argparse.ArgumentParser(
        prog="metastasis",
        description="Detect metastatic cancer in 96x96 H&E lymph-node patches (PCam / Kaggle).",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, text) in command_listing().items():
        if commands is not None and name not in commands:
            sub.add_parser(name, help=text)
            continue
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=text, description=mod.__doc__, formatter_class=_DefaultsHelp)
        mod.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    command = wanted_command(words)
    args = build_parser([command] if command else []).parse_args(words)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        module = importlib.import_module(command_listing()[args.command][0])
        return int(module.run(args) or 0)
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
