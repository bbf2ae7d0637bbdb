"""A step's forecast reaches the people who read the rollout: the pull-request body lists its advice,
the HTML report each check's expected time (the API returns the verdict as stored, forecast included)."""

from __future__ import annotations

from canaryflow.app.report import ReportData, StepRecord, render_html
from canaryflow.kernel.analysis.forecast import forecast
from canaryflow.kernel.types import RolloutSpec, Verdict
from gitops.report import approval_report
from policies import load_policy

SPEC = RolloutSpec(rollout_id="thin-1", model="minilm", baseline_version="2", canary_version="3")
THIN = forecast(load_policy("default"), 2.0, steps=[0], refine=False).to_dict()
ADVICE = "at 0.2 canary requests/s the error-rate check needs about"


def test_the_pull_request_body_lists_the_advice() -> None:
    body = approval_report(SPEC, Verdict(decision="inconclusive", forecast=THIN))
    assert "### Forecast" in body and ADVICE in body and "consider `policies/low-traffic.yaml`" in body
    assert "### Forecast" not in approval_report(SPEC, Verdict(decision="promote"))


def test_the_pull_request_body_gives_each_checks_expected_time_and_the_policy() -> None:
    fits = forecast(load_policy("default"), 20.0, steps=[1], refine=False).to_dict()
    spec = SPEC.model_copy(update={"policy": "low-traffic@prior_strength=1300"})
    body = approval_report(spec, Verdict(decision="promote", forecast=fits))
    line = next(x for x in body.splitlines() if x.startswith("- step 2 (50%)"))
    assert "at 10 canary requests/s: latency p50 in about" in line and "error-rate in about" in line
    assert "expected to decide in about" in line and "consider" not in body
    assert "From the traffic the step saw (20 requests/s)" in body
    assert "| low-traffic@prior_strength=1300 |" in body  # the policy the rollout ran under
    thin = approval_report(SPEC, Verdict(decision="inconclusive", forecast=THIN))
    assert "not expected to decide within max_duration_s (1,800 s)" in thin


def test_the_report_shows_each_checks_expected_time() -> None:
    data = ReportData(
        spec=SPEC,
        decision="inconclusive",
        reason="step 1 undecided",
        duration_s=1800,
        steps=[
            StepRecord(
                weight=10, started_s=0, ended_s=1800, verdict=Verdict(decision="inconclusive", forecast=THIN)
            )
        ],
    )
    html = render_html(data)
    assert "step 1 forecast at 2 req/s: latency_p50" in html and ADVICE in html
    # and a verdict survives the round trip through JSON (the controller stores it so)
    assert (
        Verdict.model_validate_json(Verdict(decision="promote", forecast=THIN).model_dump_json()).forecast
        == THIN
    )
