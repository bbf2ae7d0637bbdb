"""The analyze step: one look at the canary against the baseline since the traffic step started.

Tick-based: each call reads the metrics accumulated since `started_at` and asks the analysis engine
once; `running` means look again later (the Argo container loops, the local runner calls it once per
reconcile). pass ends the node Succeeded; fail and inconclusive end it Failed, which rolls back.
"""

from __future__ import annotations

import time

from canaryflow.adapters.metrics import MetricsError
from canaryflow.kernel.analysis import analyze as analyze_observations
from canaryflow.kernel.contracts.steps import Output
from gitops.report import approval_report
from workflows.steps.base import StepInput, StepOutcome
from workflows.steps.context import StepContext


def analyze(ctx: StepContext, step: StepInput) -> StepOutcome:
    spec = step.spec
    policy = step.policy or ctx.policy_for(spec.policy)
    index = step.int_param("step_index")
    since = step.started_at if step.started_at is not None else time.time()
    try:
        observations = ctx.metrics.observe(
            spec.model, spec.baseline_version, spec.canary_version, since=since
        )
    except MetricsError as exc:
        # An outage must neither promote nor roll back: wait, and say why, until the step's time is up.
        if time.time() - since >= policy.max_duration_s:
            return StepOutcome(
                state="failed",
                outputs={Output.VERDICT: "inconclusive"},
                message=f"inconclusive: metrics unavailable until max_duration_s ({exc})",
            )
        return StepOutcome(state="running", message=f"waiting: metrics unavailable ({exc})")
    result = analyze_observations(policy, observations, step_index=index)
    outputs = {Output.VERDICT: result.status, Output.VERDICT_JSON: result.verdict.model_dump_json()}
    reasons = "; ".join(
        dict.fromkeys(c.reason for c in result.verdict.checks if c.reason and c.verdict != "pass")
    )
    weight = policy.steps[index].weight
    if result.status == "running":
        return StepOutcome(state="running", outputs=outputs, message=reasons or f"analyzing at {weight}%")
    return StepOutcome(
        state="succeeded" if result.status == "pass" else "failed",
        outputs=outputs,
        message=f"{result.status} at {weight}%" + (f": {reasons}" if reasons else ""),
        report_markdown=approval_report(spec, result.verdict),
    )
