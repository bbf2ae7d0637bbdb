"""The report's evidence-over-time plot: one per metric, with the phases marked."""

from __future__ import annotations

import base64

from canaryflow.app.report import render_html
from canaryflow.app.report.model import EvidencePoint, PhaseMark
from tests.demo.test_report import _data


def test_one_evidence_plot_per_metric_with_phase_marks() -> None:
    points = [
        EvidencePoint(
            t_s=float(t),
            phase=phase,
            metric=metric,
            kind=kind,
            estimate=est,
            lower=est - 0.1,
            upper=est + 0.1,
            tolerance=tol,
            alternative=alt,
        )
        for t, phase in ((130, "10%"), (200, "10%"), (300, "bake"), (400, "watch"))
        for metric, kind, est, tol, alt in (
            ("latency_p95", "latency", 0.02 + t / 2000, 0.10, 0.25),
            ("error_rate", "error_rate", 0.001, 0.005, 0.02),
        )
    ]
    marks = [PhaseMark(t_s=0, label="10%"), PhaseMark(t_s=120, label="10%: warm-up over"),
             PhaseMark(t_s=250, label="bake"), PhaseMark(t_s=350, label="watch")]  # fmt: skip
    page = render_html(_data().model_copy(update={"evidence": points, "marks": marks}))
    assert "alt='Evidence: latency_p95'" in page and "alt='Evidence: error_rate'" in page
    images = page.split("src='data:image/png;base64,")[1:]
    assert len(images) == 5  # latency, errors, traffic, and one evidence plot per metric
    assert all(base64.b64decode(c.split("'", 1)[0]).startswith(b"\x89PNG") for c in images)
