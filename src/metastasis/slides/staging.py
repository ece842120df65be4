"""Lymph-node categories and pN stages, as CAMELYON17 defined them (pure functions).

Research use only: these are the challenge's rules applied to a model's output, not a
diagnosis.

A slide (one lymph node) is categorised by its largest lesion's longest diameter:
``negative`` (no lesion), ``itc`` (isolated tumour cells, <= 0.2 mm), ``micro``
(micro-metastasis, > 0.2 to <= 2 mm) or ``macro`` (macro-metastasis, > 2 mm); the cut-offs are
parameters. A patient's pN stage from their nodes' categories (CAMELYON17):

* ``pN0``: no micro- or macro-metastases and no ITC;
* ``pN0(i+)``: only ITC;
* ``pN1mi``: micro-metastases, no macro-metastasis;
* ``pN1``: metastases (micro or macro) in 1-3 nodes, at least one a macro-metastasis;
* ``pN2``: metastases in 4-9 nodes, at least one a macro-metastasis.

CAMELYON17 has five nodes per patient, so pN3 (10 or more nodes) is out of its scope: more
than 9 nodes with metastases gives ``pN3`` here all the same. A node whose tissue could not
all be examined (tiles that failed to decode) and in which no tumour was found is ``unknown``,
never ``negative``; a patient with a node that is unknown or could not be analysed gets
``unknown``.
"""

from __future__ import annotations

from collections.abc import Iterable

CATEGORIES = ("negative", "itc", "micro", "macro")
UNKNOWN = "unknown"  # a node not (fully) examined: never negative by default
STAGES = ("pN0", "pN0(i+)", "pN1mi", "pN1", "pN2", "pN3")
ITC_MM = 0.2
MICRO_MM = 2.0


def slide_category(
    largest_diameter_mm: float | None, itc_mm: float = ITC_MM, micro_mm: float = MICRO_MM
) -> str:
    """The node's category from its largest lesion's longest diameter (None: no lesion)."""
    if not 0 < itc_mm < micro_mm:
        raise ValueError(f"cut-offs must satisfy 0 < itc ({itc_mm}) < micro ({micro_mm})")
    if largest_diameter_mm is None or largest_diameter_mm <= 0:
        return "negative"
    if largest_diameter_mm <= itc_mm:
        return "itc"
    if largest_diameter_mm <= micro_mm:
        return "micro"
    return "macro"


def pn_stage(categories: Iterable[str | None]) -> str:
    """The pN stage of a patient from the categories of their nodes (None or ``UNKNOWN``: not
    analysed, or not completely)."""
    cats = list(categories)
    if not cats or any(c is None or c == UNKNOWN for c in cats):
        return "unknown"
    unknown = [c for c in cats if c not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown node categories {unknown}; known: {', '.join(CATEGORIES)}")
    metastases = sum(c in ("micro", "macro") for c in cats)
    if "macro" in cats:
        if metastases >= 10:
            return "pN3"
        return "pN2" if metastases >= 4 else "pN1"
    if "micro" in cats:
        return "pN1mi"
    if "itc" in cats:
        return "pN0(i+)"
    return "pN0"
