"""Tests for metastasis.reports.html: the templates ship with the package, every page is one
self-contained file, numbers are formatted alike, and what a template is not given is an error."""

from __future__ import annotations

from importlib.resources import files

import jinja2
import numpy as np
import pandas as pd
import pytest

from metastasis.reports.html import fixed, frame_table, render_page, significant

PAGES = ("eda.html", "evaluation.html", "slides.html", "tune.html")


def test_templates_are_package_data_with_one_stylesheet() -> None:
    folder = files("metastasis.reports") / "templates"
    names = {p.name for p in folder.iterdir()}
    assert {"base.html", "macros.html", "report.css", *PAGES} <= names
    assert [n for n in names if n.endswith(".css")] == ["report.css"]
    for page in PAGES:  # every page extends the base, which inlines the stylesheet
        assert '{% extends "base.html" %}' in (folder / page).read_text()


def test_numbers_are_formatted_alike() -> None:
    assert [fixed(v) for v in (0.75, 1234, np.int64(5), None, np.nan, pd.NA, True)] == [
        "0.7500", "1,234", "5", "n/a", "n/a", "n/a", "yes",
    ]  # fmt: skip
    assert [significant(v) for v in (0.012345, 123.456, 12, float("inf"))] == [
        "0.0123", "123.5", "12", "n/a",
    ]  # fmt: skip


def test_frame_table_gives_plain_rows_without_the_index() -> None:
    frame = pd.DataFrame({"a": [1.5, np.nan], "b": ["x", None]}, index=[7, 8])
    frame["n"] = pd.array([1, None], dtype="Int64")
    assert frame_table(frame) == (["a", "b", "n"], [[1.5, "x", 1], [None, None, None]])


def test_a_missing_value_is_an_error_not_an_empty_page() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render_page("slides.html", title="t")
