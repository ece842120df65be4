"""Declared settings: a setting is declared once, with its type, allowed values, default and
help text, on a frozen pydantic model (`Settings`), and everything else is read from that
declaration: the command-line flags (`metastasis.cli.common`), the README's options table, the
documentation's command page and the one-line errors (`validation_message`: the setting, what
is wrong, and the source, a YAML file or "options").
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar, cast, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from metastasis.errors import MetastasisError

S = TypeVar("S", bound="Settings")


def setting(
    default: Any = None,
    help: str = "",
    *,
    default_text: str | None = None,
    metavar: str | None = None,
    noun: str | None = None,
    **constraints: Any,
) -> Any:
    """A declared setting: its default, its help text and (for ``None`` defaults) what ``None``
    means, shown as the default in ``--help`` and the README (``default_text``); ``metavar``
    names its value in ``--help``, ``noun`` names one value in errors ("unknown NOUN 'x'")."""
    named = (("default_text", default_text), ("metavar", metavar), ("noun", noun))
    extra: JsonDict = {k: v for k, v in named if v}
    if isinstance(default, (dict, list)):
        value = default
        return Field(
            default_factory=lambda: value.copy(),
            description=help,
            json_schema_extra=extra or None,
            **constraints,
        )
    return Field(default, description=help, json_schema_extra=extra or None, **constraints)


class Settings(BaseModel):
    """A frozen set of declared settings whose problems are one-line `MetastasisError`s naming
    the setting and the source (``model_validate(values, context={"source": ...})``)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,
        coerce_numbers_to_str=True,  # `split: 2019` in a YAML file is the split "2019"
        validate_default=False,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_switch_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        if isinstance(value, bool) and value_type(cls.model_fields[name]) in (int, float):
            raise PydanticCustomError("bool_type", "a number, not true/false")  # YAML's yes/no
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _one_line_errors(
        cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        try:
            return handler(data)
        except ValidationError as err:
            source = (info.context or {}).get("source", cls.__name__)
            raise MetastasisError(validation_message(err, cls, source)) from None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def validated(model: type[S], values: dict[str, Any], source: str) -> S:
    """``values`` as a ``model`` (a `Settings`); a problem is one line starting with ``source``."""
    return model.model_validate(values, context={"source": source})


# ---------------------------------------------------------------------------- reading a declaration


def choices(info: FieldInfo) -> tuple[Any, ...]:
    """The allowed values of a setting (of each item for a list), or () when any value of its
    type is allowed."""
    hint = info.annotation
    if get_origin(hint) is list:
        hint = get_args(hint)[0]
    optional = [a for a in get_args(hint) if a is not type(None)]
    if type(None) in get_args(hint) and len(optional) == 1:  # Literal[...] | None
        hint = optional[0]
    return get_args(hint) if get_origin(hint) is Literal else ()


def value_type(info: FieldInfo) -> type:
    """The setting's type without ``None``: int, float, bool, str, dict or list."""
    hint = info.annotation
    args = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) is not Literal and type(None) in get_args(hint):
        hint = args[0]
    origin = get_origin(hint)
    if origin is Literal:
        return type(get_args(hint)[0])
    return cast(type, origin or hint)


def extra(info: FieldInfo, key: str) -> Any:
    return info.json_schema_extra.get(key) if isinstance(info.json_schema_extra, dict) else None


def default_text(info: FieldInfo) -> str:
    """The default as a user reads it (in ``--help`` and the README's table)."""
    text = extra(info, "default_text")
    if text:
        return str(text)
    value = info.get_default(call_default_factory=True)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return "none" if not value else ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "none" if value is None else str(value)


def range_text(info: FieldInfo) -> str:
    """The allowed range of a number, e.g. ``[0, 1)`` or ``>= 1``; '' when any."""
    low = high = None
    for m in info.metadata:
        for attr, bracket in (("ge", "["), ("gt", "(")):
            if getattr(m, attr, None) is not None:
                low = (bracket, getattr(m, attr))
        for attr, bracket in (("le", "]"), ("lt", ")")):
            if getattr(m, attr, None) is not None:
                high = (bracket, getattr(m, attr))
    if low and high:
        return f"in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]:g}"
    if high:
        return f"{'<=' if high[0] == ']' else '<'} {high[1]:g}"
    return ""


def validation_message(err: ValidationError, model: type[BaseModel], source: str) -> str:
    """A pydantic error as one line: ``SOURCE: what is wrong`` (every problem, separated by ;)."""
    fields = model.model_fields
    problems: list[str] = []
    unknown = sorted(str(e["loc"][0]) for e in err.errors() if e["type"] == "extra_forbidden")
    if unknown:
        problems.append(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    for e in err.errors():
        kind, loc, value = e["type"], e["loc"], e.get("input")
        name = str(loc[0]) if loc else ""
        info = fields.get(name)
        if kind == "extra_forbidden":
            continue
        if info is None or kind == "value_error":
            problems.append(str(e.get("ctx", {}).get("error", e["msg"])))
        elif kind == "literal_error":
            noun = extra(info, "noun") or name
            known = ", ".join(map(str, choices(info)))
            problems.append(f"unknown {noun} {value!r}; known: {known}")
        elif kind == "finite_number":
            problems.append(f"setting {name!r} expects a finite number, got {value!r}")
        elif kind.endswith(("_type", "_parsing")) or kind == "int_from_float":
            problems.append(f"setting {name!r} expects {value_type(info).__name__}, got {value!r}")
        elif kind.startswith(("greater_than", "less_than")):
            problems.append(f"{name} must be {range_text(info)}, got {value!r}")
        else:
            problems.append(f"{name}: {e['msg']}, got {value!r}")
    return f"{source}: {'; '.join(dict.fromkeys(problems))}"


def flag_name(name: str, kind: type = str) -> str:
    """The command-line flag of a setting (``--no-x`` is its switch-off for booleans)."""
    flag = "--" + ("logger" if name == "loggers" else name).replace("_", "-")
    return f"{flag}/--no-{flag[2:]}" if kind is bool else flag
