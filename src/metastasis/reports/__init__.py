"""Reports: metrics and plots into files (PNG + HTML + JSON).

:mod:`.html` is the one HTML layer (Jinja2 templates under ``templates/``, autoescaped, one
stylesheet inlined), :mod:`.figures` the one figure writer; :mod:`.evaluation` writes the
evaluation and training-run reports, :mod:`.explanations` and :mod:`.augment_preview` draw
their pictures. The EDA report lives in :mod:`metastasis.eda`.

The package imports nothing itself: :mod:`.evaluation` (metrics, scikit-learn, matplotlib:
about 3.5 CPU seconds) is imported when one of its names is used, so a page that needs only
:mod:`.html` (the slides report) does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metastasis.reports.evaluation import write_evaluation, write_html_report

__all__ = ["write_evaluation", "write_html_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from metastasis.reports import evaluation

        return getattr(evaluation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
