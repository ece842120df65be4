"""Search spaces: a YAML mapping of training settings to ranges, choices or grids.

Each key is a `TrainConfig` setting; a key of a dict setting is addressed with a dot
(``model_kwargs.dropout``). Each value is one of::

    lr: {low: 1.0e-4, high: 1.0e-2, log: true, grid: [1.0e-4, 1.0e-3, 1.0e-2]}
    epochs: {low: 1, high: 4}            # whole numbers -> an integer range
    model_kwargs.dropout: {low: 0.0, high: 0.5, step: 0.1}
    batch_size: {choices: [32, 64, 128]}
    augment: [none, flips]               # a list is short for choices
    val_fraction: 0.2                    # a plain value is fixed for every trial

The grid sampler needs discrete values: ``choices``, ``grid``, or an integer range (each whole
number in it). Parsing needs no Optuna; ``suggest`` takes an Optuna trial.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metastasis.config import TrainConfig, build_config, read_yaml
from metastasis.errors import MetastasisError

_SPEC_KEYS = {"low", "high", "log", "step", "type", "choices", "grid"}
_NOT_SEARCHABLE = {"out"}  # set per trial by the search itself
_MAX_INT_GRID = 100


@dataclass(frozen=True)
class Param:
    """One searched setting: a float or int range, or a categorical choice."""

    name: str
    kind: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    grid: tuple[Any, ...] = ()

    def grid_values(self) -> list[Any]:
        if self.grid:
            return list(self.grid)
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int" and self.low is not None and self.high is not None:
            step = int(self.step or 1)
            values = list(range(int(self.low), int(self.high) + 1, step))
            if len(values) <= _MAX_INT_GRID:
                return values
        raise MetastasisError(
            f"{self.name}: the grid sampler needs discrete values; add `grid: [...]` "
            "or use `choices: [...]`"
        )

    def suggest(self, trial: Any, grid: bool = False) -> Any:
        """Ask ``trial`` (an ``optuna.Trial``) for a value; the grid sampler picks from the grid."""
        if grid:
            return trial.suggest_categorical(self.name, self.grid_values())
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            low, high, step = int(self.low or 0), int(self.high or 0), int(self.step or 1)
            return trial.suggest_int(self.name, low, high, step=step, log=self.log)
        return trial.suggest_float(
            self.name, float(self.low or 0), float(self.high or 0), step=self.step, log=self.log
        )


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = "search space"

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def grid(self) -> dict[str, list[Any]]:
        return {p.name: p.grid_values() for p in self.params}

    def settings(self) -> set[str]:
        """Every setting the space decides: searched or fixed."""
        return {*self.names, *self.fixed}

    def grid_points(self) -> list[dict[str, Any]]:
        grid = self.grid()
        return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]

    def suggest(self, trial: Any, grid: bool = False) -> dict[str, Any]:
        return {p.name: p.suggest(trial, grid) for p in self.params}

    def to_dict(self) -> dict[str, Any]:
        """A plain description (stored with the study, to refuse resuming with another space)."""
        out: dict[str, Any] = dict(self.fixed)
        for p in self.params:
            spec = {k: v for k, v in dataclasses.asdict(p).items() if v not in (None, False, ())}
            spec.pop("name")
            out[p.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.items()}
        return out


def load_space(path: str | Path) -> SearchSpace:
    return parse_space(read_yaml(path), source=str(path))


def parse_space(raw: Mapping[str, Any], source: str = "search space") -> SearchSpace:
    params: list[Param] = []
    fixed: dict[str, Any] = {}
    for name, spec in raw.items():
        _check_name(str(name), source)
        if isinstance(spec, Mapping):
            params.append(_param(str(name), spec, source))
        elif isinstance(spec, list):
            params.append(_param(str(name), {"choices": spec}, source))
        else:
            fixed[str(name)] = spec
    if not params:
        raise MetastasisError(f"{source}: nothing to search; give at least one range or choice")
    # Fail now, not in trial 7, when a value cannot become a valid config.
    apply_params(TrainConfig(), fixed, source)
    for p in params:
        for value in _examples(p):
            apply_params(TrainConfig(), {p.name: value}, f"{source}: {p.name}")
    return SearchSpace(tuple(params), fixed, source)


def apply_params(
    base: TrainConfig, values: Mapping[str, Any], source: str = "search space"
) -> TrainConfig:
    """``base`` with ``values`` set; dotted names set one key of a dict setting."""
    settings = base.to_dict()
    for name, value in values.items():
        top, _, key = name.partition(".")
        if key:
            settings[top] = {**(settings.get(top) or {}), key: value}
        else:
            settings[top] = value
    return build_config(settings, source=source)


def _check_name(name: str, source: str) -> None:
    known = TrainConfig.model_fields
    top, dot, key = name.partition(".")
    if top not in known or top in _NOT_SEARCHABLE:
        searchable = ", ".join(k for k in known if k not in _NOT_SEARCHABLE)
        raise MetastasisError(f"{source}: unknown setting {name!r}; searchable: {searchable}")
    if dot and (not key or not isinstance(getattr(TrainConfig(), top), dict)):
        raise MetastasisError(
            f"{source}: {name!r}: a dotted name must be a key of a dict setting, "
            "e.g. model_kwargs.dropout"
        )


def _param(name: str, spec: Mapping[str, Any], source: str) -> Param:
    where = f"{source}: {name}"
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise MetastasisError(
            f"{where}: unknown key(s) {', '.join(unknown)}; use {', '.join(sorted(_SPEC_KEYS))}"
        )
    grid = tuple(_values(spec.get("grid", []), "grid", where))
    if "choices" in spec or ("low" not in spec and "high" not in spec):
        choices = tuple(_values(spec.get("choices", grid), "choices", where))
        if not choices:
            raise MetastasisError(f"{where}: give `low` and `high`, `choices` or `grid`")
        return Param(name, "categorical", choices=choices, grid=grid)
    if "low" not in spec or "high" not in spec:
        raise MetastasisError(f"{where}: a range needs both `low` and `high`")
    low, high = _number(spec["low"], "low", where), _number(spec["high"], "high", where)
    step = _number(spec["step"], "step", where) if spec.get("step") is not None else None
    log = bool(spec.get("log", False))
    kind = str(spec.get("type") or _infer_kind(spec))
    if kind not in ("int", "float"):
        raise MetastasisError(f"{where}: `type` must be int or float, got {kind!r}")
    if not low < high:
        raise MetastasisError(f"{where}: `low` must be below `high`")
    if log and (low <= 0 or step is not None):
        raise MetastasisError(f"{where}: a log range needs `low` > 0 and no `step`")
    if step is not None and step <= 0:
        raise MetastasisError(f"{where}: `step` must be positive")
    return Param(name, kind, low=low, high=high, log=log, step=step, grid=grid)


def _infer_kind(spec: Mapping[str, Any]) -> str:
    numbers = [spec[k] for k in ("low", "high", "step") if spec.get(k) is not None]
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in numbers)
    return "int" if whole else "float"


def _number(value: Any, key: str, where: str) -> float:
    # YAML 1.1 reads 1e-4 (no dot) as a string; accept it as the number it is meant to be.
    try:
        number = value if isinstance(value, int) and not isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        raise MetastasisError(f"{where}: `{key}` must be a number, got {value!r}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise MetastasisError(f"{where}: `{key}` must be finite")
    return number


def _values(values: Any, key: str, where: str) -> list[Any]:
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise MetastasisError(f"{where}: `{key}` must be a list")
    for v in values:
        if v is not None and not isinstance(v, (str, int, float, bool)):
            raise MetastasisError(f"{where}: `{key}` values must be numbers, strings or booleans")
    if len(set(map(repr, values))) != len(values):
        raise MetastasisError(f"{where}: `{key}` lists a value twice")
    return [_maybe_float(v) for v in values]


def _maybe_float(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value) if any(c.isdigit() for c in value) else value
        except ValueError:
            return value
    return value


def _examples(p: Param) -> list[Any]:
    if p.kind == "categorical":
        return [*p.choices, *p.grid]
    cast = int if p.kind == "int" else float
    return [cast(v) for v in (p.low, p.high, *p.grid) if v is not None]
