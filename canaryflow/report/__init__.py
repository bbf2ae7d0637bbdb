"""Rollout reports: what an operator (or a PR reviewer) reads to trust a decision."""

from canaryflow.report.html import render_html
from canaryflow.report.model import ReportData, StepRecord, TimePoint

__all__ = ["ReportData", "StepRecord", "TimePoint", "render_html"]
