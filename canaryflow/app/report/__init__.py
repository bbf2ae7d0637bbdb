"""Rollout reports: what an operator (or a PR reviewer) reads to trust a decision."""

from canaryflow.app.report.html import render_html
from canaryflow.app.report.model import ReportData, StepRecord, TimePoint

__all__ = ["ReportData", "StepRecord", "TimePoint", "render_html"]
