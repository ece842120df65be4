"""The one HTML layer: every report page is a Jinja2 template under ``templates/``.

``base.html`` holds the page frame and inlines ``report.css``, the one stylesheet, so each
report is a single self-contained file (its figures are PNG files beside it, by relative name)
that opens offline. Autoescaping is on for every HTML template: ids, paths, class names, titles
and notes are text, never markup (``model_card.md``, Markdown, is rendered without it by
``export.model_card``). :func:`render_page` returns a page, :func:`write_page` writes it
atomically. The filters format numbers the same way in every report, and name things the same
way: ``words`` turns a machine key (``val_roc_auc``) into what a person reads ("validation
ROC-AUC", :mod:`metastasis.reports.names`); ``breakable`` lets long paths wrap after each ``/`` so
that tables fit the page.
"""

from __future__ import annotations

import math
import numbers
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from metastasis.io import atomic_write_text
from metastasis.reports.names import figure_caption, split_words, words

__all__ = [
    "breakable",
    "fixed",
    "frame_table",
    "render_page",
    "significant",
    "unbroken",
    "write_page",
]


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, numbers.Real) and not math.isfinite(float(value))


def fixed(value: Any, digits: int = 4) -> str:
    """Numbers for tables of metrics: floats to ``digits`` decimals, whole numbers with
    thousands separators, missing values (None, NaN, NA) as ``n/a``, yes/no for booleans."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if _missing(value):
        return "n/a"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return f"{float(value):.{digits}f}"
    return str(value)


def significant(value: Any) -> str:
    """Numbers for tables of statistics: 3 significant digits (one decimal from 100 up)."""
    if isinstance(value, numbers.Real) and not isinstance(
        value, (bool, np.bool_, numbers.Integral)
    ):
        v = float(value)
        if math.isfinite(v):
            return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3g}"
    return fixed(value)


def breakable(value: Any) -> Markup:
    """``value`` as escaped text that may wrap after each ``/`` (a ``<wbr>`` there): a long
    path then wraps inside its table cell instead of widening the table."""
    text = escape(str(value))
    return text.replace("/", Markup("/<wbr>"))


def unbroken(value: Any) -> Markup:
    """``value`` as escaped text whose hyphenated words never break at the hyphen ("ROC-AUC"
    stays whole when a table header wraps)."""
    parts = str(value).split(" ")
    return Markup(" ").join(
        Markup('<span class="word">{}</span>').format(p) if "-" in p else escape(p) for p in parts
    )


def frame_table(frame: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    """A table's header and rows of plain values (missing as None), without the index."""
    cells = frame.astype(object).where(frame.notna(), None)
    return [str(c) for c in frame.columns], cells.to_numpy().tolist()


def is_text(value: Any) -> bool:
    """True for values shown as text (left-aligned), False for numbers and missing values."""
    return isinstance(value, str)


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The templates of ``metastasis.reports``, autoescaped, strict about undefined names."""
    env = Environment(
        loader=PackageLoader("metastasis.reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        fixed=fixed,
        significant=significant,
        words=words,
        split_words=split_words,
        figure_caption=figure_caption,
        breakable=breakable,
        unbroken=unbroken,
    )
    env.tests["text"] = is_text
    return env


def render_page(template: str, **context: Any) -> str:
    """The page ``template`` (a name under ``templates/``) filled with ``context``."""
    return environment().get_template(template).render(**context)


def write_page(path: str | os.PathLike[str], template: str, **context: Any) -> Path:
    """Render ``template`` and write it to ``path`` atomically; return the path."""
    return atomic_write_text(path, render_page(template, **context))
