"""slides.staging: node categories and CAMELYON17 pN stages on hand-made tables."""

from __future__ import annotations

import pytest

from metastasis.slides.staging import pn_stage, slide_category


@pytest.mark.parametrize(
    ("diameter", "category"),
    [(None, "negative"), (0.0, "negative"), (0.05, "itc"), (0.2, "itc"), (0.2001, "micro"),
     (2.0, "micro"), (2.01, "macro"), (15.0, "macro")],
)  # fmt: skip
def test_category_by_the_largest_lesion(diameter: float | None, category: str) -> None:
    assert slide_category(diameter) == category


def test_category_cut_offs_are_options() -> None:
    assert slide_category(0.3, itc_mm=0.5) == "itc"
    assert slide_category(1.5, micro_mm=1.0) == "macro"
    with pytest.raises(ValueError):
        slide_category(1.0, itc_mm=2.0, micro_mm=1.0)


@pytest.mark.parametrize(
    ("nodes", "stage"),
    [
        (["negative"] * 5, "pN0"),
        (["negative", "itc", "negative", "itc", "negative"], "pN0(i+)"),
        (["itc", "micro", "negative", "negative", "negative"], "pN1mi"),
        (["micro", "micro", "micro", "micro", "micro"], "pN1mi"),
        (["macro", "negative", "negative", "negative", "negative"], "pN1"),
        (["macro", "micro", "micro", "itc", "itc"], "pN1"),  # ITC do not count as metastases
        (["macro", "micro", "micro", "micro", "negative"], "pN2"),
        (["macro"] * 5, "pN2"),
        (["macro"] * 10, "pN3"),
        (["macro", None, "negative"], "unknown"),  # a node not analysed
        ([], "unknown"),
    ],
)
def test_pn_stage_camelyon17(nodes: list[str | None], stage: str) -> None:
    assert pn_stage(nodes) == stage


def test_unknown_category_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown node categories"):
        pn_stage(["huge"])
