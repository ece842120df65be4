"""Reports: orchestrate metrics and plots into a run folder (PNG + HTML)."""

from metastasis.reports.evaluation import write_evaluation, write_html_report

__all__ = ["write_evaluation", "write_html_report"]
