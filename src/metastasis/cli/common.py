"""Options shared by several commands, and settings flags derived from their declarations.

A settings model (``TrainConfig`` in ``metastasis.config``: pydantic) declares each setting's
type, allowed values, default and help once; `add_setting_flags` turns the named settings into
flags: ``--name-with-dashes`` of the setting's type, with its allowed values, its help and its
default (shown in ``--help``). A bad value is refused by the model, in one line. A flag not
given is ``None``, so the recipe's value stays. Booleans are ``--x/--no-x``; a dict setting is
``--x KEY=VALUE`` (repeatable, the value read as YAML: ``--model-kwargs dropout=0.3
--model-kwargs fourth_block=true``; these keys replace those of the recipe's dict, the others
stay); a list setting takes several values, repeated or comma-separated (``--logger
csv,mlflow`` or ``--logger csv --logger mlflow``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

    from metastasis.config import TrainConfig


def add_cache_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="cache folder for decoded patches (default: $METASTASIS_CACHE or ~/.cache/metastasis)",
    )


def add_progress_option(p: argparse.ArgumentParser, instead: str = "") -> None:
    """``--no-progress``; ``instead`` says what the command logs in place of its bars."""
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars, for jobs without a terminal" + (f"; {instead}" if instead else ""),
    )


def add_data_options(p: argparse.ArgumentParser, training: bool = False) -> None:
    """``--cache-dir`` and ``--no-progress`` (commands that read data sets)."""
    add_cache_option(p)
    add_progress_option(
        p, "training logs each tenth of an epoch with its speed instead" if training else ""
    )


def progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "no_progress", False)


# ---------------------------------------------------------------------------- derived flags


def add_setting_flags(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    model: type[BaseModel],
    names: Sequence[str],
) -> None:
    """A flag for each of ``names``, derived from ``model``'s declaration of it."""
    from metastasis.settings import choices, default_text, extra, flag_name, value_type

    for name in names:
        info = model.model_fields[name]
        kind = value_type(info)
        flag = flag_name(name, kind).split("/", 1)[0]
        words = (info.description or "").rstrip(".")
        if kind is dict:
            words += "; repeatable"
        elif kind is list:
            words += "; several: repeated or comma-separated"
        text = f"{words} (default: {default_text(info)})".replace("%", "%%")
        metavar = extra(info, "metavar")
        allowed = choices(info)
        kw: dict[str, Any] = {"dest": name, "default": None, "help": text}
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif kind is dict:
            kw |= {"action": "append", "type": _key_value, "metavar": metavar or "KEY=VALUE"}
        elif kind is list:
            shown = "{" + ",".join(allowed) + "}" if allowed else "VALUE"
            kw |= {"action": "extend", "type": _list_of(allowed), "metavar": metavar or shown}
        elif allowed:  # checked by the model, whose error is one line naming the choices
            kw |= {"type": kind, "metavar": "{" + ",".join(map(str, allowed)) + "}"}
        else:
            kw |= {"type": kind, "metavar": metavar or _metavar(kind, name)}
        p.add_argument(flag, **kw)


def setting_values(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The given settings flags as setting values (None where a flag was not given)."""
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(args, name, None)
        if isinstance(value, list) and value and isinstance(value[0], tuple):  # KEY=VALUE pairs
            value = dict(value)
        elif isinstance(value, list):
            value = list(dict.fromkeys(value))  # `--logger csv --logger csv,mlflow`
        out[name] = value
    return out


def add_inference_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The flags of ``InferenceOptions`` (engine, tta, batch size, device)."""
    from metastasis.inference.options import NAMES, InferenceOptions

    add_setting_flags(p, InferenceOptions, NAMES)


def inference_values(args: argparse.Namespace) -> dict[str, Any]:
    """The ``InferenceOptions`` given on the command line, checked, defaults filled in."""
    from metastasis.inference.options import NAMES, inference_options

    return inference_options(setting_values(args, NAMES)).to_dict()


def add_checkpoint_options(
    p: argparse.ArgumentParser,
    out_help: str,
    split_help: str = "split of --data (default: test, else valid or val, else the only one)",
    data_help: str = "Kaggle folder, PCam .h5 files or class folders",
) -> None:
    """--checkpoint, --data, --split, --out, the inference flags and the data options."""
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or a run folder")
    p.add_argument("--data", required=True, help=data_help)
    p.add_argument("--split", help=split_help)
    p.add_argument("--out", required=True, help=out_help)
    add_inference_flags(p)
    add_data_options(p)


def checkpoint_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword options that ``add_checkpoint_options`` added, as the API takes them."""
    return {
        "split": args.split,
        "cache_dir": args.cache_dir,
        "progress": progress(args),
        **inference_values(args),
    }


def training_config(config: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """The --config recipe (or the defaults) with the given flags on top; a dict flag's keys
    are set in the recipe's dict, its other keys stay. A bad value is reported as the recipe's
    when the recipe alone has it, else as the options'."""
    from metastasis.config import build_config, resolve_config

    recipe = resolve_config(config).to_dict()
    given = {k: v for k, v in overrides.items() if v is not None}
    for name, value in given.items():
        if isinstance(value, dict) and isinstance(recipe.get(name), dict):
            given[name] = {**recipe[name], **value}
    return build_config(recipe | given, source="options")


def given_flags(values: dict[str, Any]) -> list[str]:
    """The flags of the settings in ``values`` that were given, as a user typed them."""
    from metastasis.settings import flag_name

    return [flag_name(k).split("/", 1)[0] for k, v in values.items() if v is not None]


def _metavar(kind: type, name: str) -> str:
    if kind in (int, float):
        return "N" if kind is int else "X"
    return name.upper()


def _key_value(text: str) -> tuple[str, Any]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def _list_of(allowed: Sequence[str]) -> Any:
    def parse(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if allowed and v not in allowed]
        if bad or not values:
            shown = ", ".join(map(repr, bad)) if bad else repr(text)
            raise argparse.ArgumentTypeError(
                f"invalid choice: {shown} (choose from {', '.join(allowed)})"
            )
        return values

    return parse
