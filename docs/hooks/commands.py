"""mkdocs hook: the command reference page, generated from the CLI's own argparse parsers.

`metastasis.cli.build_parser()` is the one definition of every command and option; this hook
turns it into ``commands.md`` at build time (a generated page, never a file to keep in step),
so a new option or command appears in the docs without anyone copying it.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

HEADER = """# Commands

Every command and option, generated from the command line's own definitions
(`metastasis.cli.build_parser()`) each time the site is built. `metastasis COMMAND --help`
prints the same. Each command is one call of the [Python API](reference.md). The training
options of `train` and `tune` are derived from the settings' declarations
(`metastasis.config.TrainConfig`); their default is the setting's own, used when neither the
flag nor the `--config` recipe sets it.

"""


def _cell(text: object) -> str:
    text = str(text).replace("|", "\\|").replace("\n", " ")
    return text.replace("<", "&lt;").replace(">", "&gt;")


_STATED_DEFAULT = re.compile(r"\s*\(default: (.*)\)$")


def _stated_default(action: argparse.Action) -> str | None:
    """The default a help text states at its end (derived settings flags say theirs)."""
    match = _STATED_DEFAULT.search(action.help or "")
    return match.group(1) if match else None


def _default(action: argparse.Action) -> str:
    stated = _stated_default(action)
    if stated is not None:
        return stated
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return ""
    if action.required or action.default is argparse.SUPPRESS or action.default is None:
        return ""
    return f"`{action.default}`"


def _name(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest.upper()}`"
    if action.nargs == 0:
        return ", ".join(f"`{s}`" for s in action.option_strings)
    if action.metavar is not None:
        metavar = str(action.metavar)
    elif action.choices is not None:
        metavar = "{" + ",".join(map(str, action.choices)) + "}"
    else:
        metavar = action.dest.upper()
    return ", ".join(f"`{s} {metavar}`" for s in action.option_strings)


def _help(action: argparse.Action) -> str:
    text = action.help or ""
    if text == argparse.SUPPRESS:
        return ""
    text = _STATED_DEFAULT.sub("", text)  # in the default column
    text = text.replace("%(default)s", str(action.default)).replace("%%", "%")
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        text = f"{text} (one of: {', '.join(f'`{c}`' for c in action.choices)})".lstrip()
    if action.required and action.option_strings:
        text = f"**required.** {text}"
    return _cell(text)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def commands_markdown(parser: argparse.ArgumentParser) -> str:
    """The reference page for ``parser`` and its sub-commands, in Markdown."""
    helps = _helps(parser)
    subs = _subcommands(parser)
    lines = [HEADER, "| command | what it does |", "|---|---|"]
    lines += [f"| [`{name}`](#{name}) | {_cell(helps.get(name, ''))} |" for name in subs]
    lines.append("")
    for name, sub in subs.items():
        lines += [f"## {name}", ""]
        if sub.description:
            lines += [sub.description.strip(), ""]
        usage = sub.format_usage().replace("usage: ", "", 1).strip()
        lines += ["```text", usage, "```", ""]
        lines += ["| option | default | description |", "|---|---|---|"]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            lines.append(f"| {_name(action)} | {_cell(_default(action))} | {_help(action)} |")
        lines.append("")
    return "\n".join(lines)


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    from metastasis.cli import build_parser

    parser = build_parser()
    parser.prog = "metastasis"
    files.append(File.generated(config, "commands.md", content=commands_markdown(parser)))
    return files
