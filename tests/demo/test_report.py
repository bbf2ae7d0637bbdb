"""The rollout report is one self-contained page: decision, verdict table, and plots of the evidence."""

from __future__ import annotations

import base64

import numpy as np

from canaryflow.app.report import ReportData, StepRecord, TimePoint, render_html
from canaryflow.kernel.analysis.observations import DEFAULT_LATENCY_BUCKETS_S, Histogram
from canaryflow.kernel.types import Check, RolloutSpec, Verdict


def _data() -> ReportData:
    rng = np.random.default_rng(0)
    baseline = Histogram.from_values(rng.lognormal(np.log(0.010), 0.3, 3000), DEFAULT_LATENCY_BUCKETS_S)
    canary = Histogram.from_values(rng.lognormal(np.log(0.020), 0.3, 400), DEFAULT_LATENCY_BUCKETS_S)
    timeline = [
        TimePoint(
            t_s=float(t),
            weight=10,
            baseline_requests=90 * t,
            baseline_errors=t // 10,
            canary_requests=10 * t,
            canary_errors=t // 3,
        )
        for t in range(0, 60, 5)
    ]
    verdict = Verdict(
        decision="rollback",
        decided_at_s=55.0,
        checks=[
            Check(metric="latency_p95", verdict="fail", reason="canary p95 > 1.10 x baseline", ratio_low=1.6),
            Check(metric="error_rate", verdict="inconclusive", reason="not enough evidence <yet>"),
        ],
    )
    return ReportData(
        spec=RolloutSpec(
            rollout_id="minilm-v3-abc", model="minilm", baseline_version="2", canary_version="3"
        ),
        decision="rollback",
        reason="latency_p95 failed at step 1",
        duration_s=60,
        steps=[StepRecord(weight=10, started_s=0, ended_s=55, verdict=verdict)],
        timeline=timeline,
        baseline_latency=baseline,
        canary_latency=canary,
        commits=["a1b2c3d minilm/production: canary v3 at 10%", "d4e5f6a minilm/production: roll back v3"],
    )


def test_report_has_decision_table_and_three_png_plots() -> None:
    page = render_html(_data())
    assert "Rollout minilm-v3-abc" in page and 'class="badge rollback"' in page
    assert "latency_p95" in page and "class='fail'" in page
    assert "not enough evidence &lt;yet&gt;" in page  # escaped, never raw markup
    images = page.split("src='data:image/png;base64,")[1:]
    assert len(images) == 3
    for chunk in images:
        png = base64.b64decode(chunk.split("'", 1)[0])
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert "d4e5f6a minilm/production: roll back v3" in page


def test_report_without_traffic_says_so() -> None:
    data = _data().model_copy(update={"timeline": [], "baseline_latency": None, "canary_latency": None})
    page = render_html(data)
    assert "No traffic was observed." in page
