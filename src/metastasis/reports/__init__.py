"""Reports: metrics and plots into files (PNG + HTML + JSON).

:mod:`.html` is the one HTML layer (Jinja2 templates under ``templates/``, autoescaped, one
stylesheet inlined), :mod:`.figures` the one figure writer; :mod:`.evaluation` writes the
evaluation and training-run reports, :mod:`.explanations` and :mod:`.augment_preview` draw
their pictures. The EDA report lives in :mod:`metastasis.eda`.
"""

from metastasis.reports.evaluation import write_evaluation, write_html_report

__all__ = ["write_evaluation", "write_html_report"]
