"""The analysis steps: a traffic step, the bake after the last one, the watch after promotion.

Tick-based: each call reads the looks that came since its last call (`ctx.analyses` keeps the ones
read and judged: `workflows.steps.analysis_cache`; a process without them reads every look since the
window started, as after a restart) and asks the analysis engine to judge the new ones; `running`
means look again later (the Argo container loops, the local runner calls it once per reconcile).
pass ends the node Succeeded; fail and inconclusive end it Failed, which rolls back.

Windows. A traffic step counts from the end of the step's `warmup_s` (a GPU version's first minutes
are slow), counted from the canary's first served request (`warmup_from: first_request`) or from the
step's start, and says so in its output `window_start`. The bake counts from the same moment (it is
the last step, going on); both read the metrics at every look since then (every
`evaluate_every_s`, from Prometheus' history), so latencies are paired by time look by look and the
latest-window and trend checks see the same windows, and the first decisive look decides, as in a
replay of the same counts; a restarted step reads the same looks and decides the same. The watch
compares what the new champion served since its own warm-up with what the previous champion served
in that last step's window: its record, judged once (no pairing, no windows).
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any

from canaryflow.adapters.metrics import MetricsError, MetricsQueryError
from canaryflow.kernel.analysis import AnalysisResult, Observations
from canaryflow.kernel.analysis import analyze as analyze_observations
from canaryflow.kernel.analysis.forecast import forecast_from_looks
from canaryflow.kernel.analysis.incremental import StepAnalysis, advance
from canaryflow.kernel.contracts.looks import on_look_grid
from canaryflow.kernel.contracts.phases import RolloutPhase
from canaryflow.kernel.contracts.steps import Output
from canaryflow.kernel.types import RolloutSpec
from gitops.report import approval_report
from policies.model import Policy
from workflows.steps.base import StepInput, StepOutcome
from workflows.steps.context import StepContext


def analyze(ctx: StepContext, step: StepInput) -> StepOutcome:
    """One traffic step: after its warm-up, until the engine decides.

    With `warmup_from: first_request` the warm-up counts from the first look at which the canary had
    served a request (the replay's rule): a version that is ready but not yet routed to, or whose
    first requests come late, is not judged on its cold start. The metrics source finds that look
    (Prometheus from its history, so a restarted step finds the same one).

    The window starts on the look grid (`canaryflow.kernel.contracts.looks`: the first multiple of
    `evaluate_every_s` at or after the warm-up's end), so every rollout of the same cadence looks at
    the same moments and one batched read serves them all; the bake goes on from the same start."""
    policy = step.policy or ctx.policy_for(step.spec.policy)
    index = step.int_param("step_index")
    started = step.started_at if step.started_at is not None else time.time()
    warmup, what = policy.steps[index].warmup_s, f"at {policy.steps[index].weight}%"
    every = policy.evaluate_every_s
    if policy.warmup_from == "step_start" or warmup <= 0:
        return _judge(ctx, step, policy, index, on_look_grid(started + warmup, every), what)
    spec = step.spec
    key = (spec.rollout_id, spec.canary_version, index, f"{started:.3f}")
    first = ctx.analyses.first_request(key)
    if first is None:
        try:
            first = ctx.metrics.first_request_at(
                spec.model, spec.canary_version, started, policy.evaluate_every_s, policy=_providers(policy)
            )
        except MetricsQueryError as exc:
            return _misread(exc, {})
        except MetricsError as exc:
            return _waiting(policy, started, f"metrics unavailable ({exc})")
        if first is None:
            return _waiting(policy, started, "no request served by the canary yet")
        ctx.analyses.keep_first_request(key, first)
    return _judge(ctx, step, policy, index, on_look_grid(first + warmup, every), what)


def _providers(policy: Policy) -> Policy | None:
    """The policy, for a metrics source, where it reads metric providers (else the source's own queries)."""
    return policy if policy.reads_own_series else None


def _misread(exc: MetricsQueryError, outputs: dict[str, str]) -> StepOutcome:
    """The policy's providers or queries cannot be read as written: no data will come, so end now."""
    return StepOutcome(
        state="failed",
        outputs={**outputs, Output.VERDICT: "inconclusive"},
        message=f"inconclusive: the policy's metrics cannot be read: {exc}",
    )


def _waiting(policy: Policy, started: float, why: str) -> StepOutcome:
    """Before the warm-up can start: wait, and say why, until the step's time is up (then inconclusive)."""
    if time.time() - started >= policy.max_duration_s:
        return StepOutcome(
            state="failed",
            outputs={Output.VERDICT: "inconclusive"},
            message=f"inconclusive: {why} when the step's time was up",
        )
    return StepOutcome(state="running", message=f"waiting for the canary's first request: {why}")


def bake(ctx: StepContext, step: StepInput) -> StepOutcome:
    """The last step goes on at its weight for `bake_s`: fails on a failing look, passes at the end."""
    policy = step.policy or ctx.policy_for(step.spec.policy)
    index = step.int_param("step_index")
    started = step.started_at if step.started_at is not None else time.time()
    since = _window_start(step, started)
    hold = started - since + policy.bake_s
    baking = RolloutPhase.BAKING
    return _judge(ctx, step, policy, index, since, baking, hold_until_s=hold, judge_after_s=started - since)


def watch(ctx: StepContext, step: StepInput) -> StepOutcome:
    """The new champion, after its warm-up, against the previous champion's record, for `watch_s`."""
    spec = step.spec
    policy = step.policy or ctx.policy_for(spec.policy)
    index = step.int_param("step_index")
    started = step.started_at if step.started_at is not None else time.time()
    warmup = policy.steps[index].warmup_s
    record_since = _window_start(step, started)
    return _judge(
        ctx,
        step,
        policy,
        index,
        started + warmup,
        "watching the new champion",
        hold_until_s=max(policy.watch_s - warmup, 0.0),
        record_since=record_since,
    )


def _window_start(step: StepInput, default: float) -> float:
    raw = step.upstream.get(Output.WINDOW_START, "")
    try:
        return float(raw) if raw else default
    except ValueError as exc:
        raise ValueError(f"upstream {Output.WINDOW_START}: not a unix time: {raw!r}") from exc


def _judge(
    ctx: StepContext,
    step: StepInput,
    policy: Policy,
    index: int,
    since: float,
    what: str,
    hold_until_s: float | None = None,
    record_since: float | None = None,
    judge_after_s: float = 0.0,
) -> StepOutcome:
    """Reads the metrics and asks the engine. `judge_after_s` (a bake): the looks up to then, counted
    from `since`, were the last step's (it passed on them): they place the windows but decide nothing."""
    spec = step.spec
    window: dict[str, str] = {Output.WINDOW_START: f"{since:.3f}"}
    now = time.time()
    if now < since:
        return StepOutcome(
            state="running", outputs=window, message=f"{what}: warming up, {since - now:.0f} s to go"
        )
    key = (spec.rollout_id, spec.baseline_version, spec.canary_version, index, f"{since:.3f}", hold_until_s)
    state = ctx.analyses.state(key) if record_since is None else None
    if state is None:
        state = StepAnalysis(step_index=index, hold_until_s=hold_until_s, judge_after_s=judge_after_s)
    try:
        if record_since is None:  # only the looks this step has not read yet (all after a restart)
            looks = ctx.metrics.observe_looks(
                spec.model,
                spec.baseline_version,
                spec.canary_version,
                since,
                policy.evaluate_every_s,
                policy=_providers(policy),
                from_look=state.looks + 1,
            )
        else:
            versions = (spec.model, spec.baseline_version, spec.canary_version)
            observed = ctx.metrics.observe(*versions, since, policy=_providers(policy))
            record = ctx.metrics.observe(*versions, record_since, policy=_providers(policy))
            looks = [_against_record(observed, record)]
    except MetricsQueryError as exc:
        return _misread(exc, window)
    except MetricsError as exc:
        # An outage must neither promote nor roll back: wait, and say why, until the step's time is up.
        limit = hold_until_s if hold_until_s is not None else policy.max_duration_s
        if now - since >= limit:
            return StepOutcome(
                state="failed",
                outputs={**window, Output.VERDICT: "inconclusive"},
                message=f"inconclusive: metrics unavailable until the step's time was up ({exc})",
            )
        return StepOutcome(state="running", outputs=window, message=f"waiting: metrics unavailable ({exc})")
    if record_since is None:
        # The new looks judged against the ones kept: what judging them all would say.
        first_new = state.looks + 1  # the 1-based index of looks[0]
        state = advance(policy, state, looks)
        ctx.analyses.keep(key, state)
        ctx.analyses.judged(spec.model, [since + look.elapsed_s for look in looks], time.time())
        # The bake carries the last step's forecast, for the pull-request body its verdict becomes; made
        # from that step's looks, which only the bake's first read (or one after a restart) holds.
        bake_ahead = (
            _last_steps_forecast(ctx, key, policy, index, looks, judge_after_s) if judge_after_s else None
        )
        if state.result is None or state.verdict_look is None:
            # the source reads a look once it is due (Prometheus: and settled)
            return StepOutcome(state="running", outputs=window, message=f"{what}: waiting for the first look")
        result = state.result
        if hold_until_s is None:  # a traffic step: when to expect a decision, from the traffic so far
            ahead = _forecast(ctx, key, policy, index, state, looks, first_new)
        else:
            ahead = bake_ahead
        if ahead is not None:
            verdict = result.verdict.model_copy(update={"forecast": ahead})
            result = result.model_copy(update={"verdict": verdict})
    elif looks[0].elapsed_s <= judge_after_s:
        return StepOutcome(state="running", outputs=window, message=f"{what}: waiting for the first look")
    else:  # a watch: against a record, judged once on all of it (the engine's module docstring)
        result = analyze_observations(
            policy,
            looks[0],
            step_index=index,
            canary_weight=100.0,
            warmed_up=True,
            hold_until_s=hold_until_s,
            recorded_baseline=True,
        )
    return _outcome(spec, result, window, what)


FORECAST_EVERY = 12  # looks (a minute at 5 s): the forecast is made again once per this many looks


def _forecast(
    ctx: StepContext,
    key: Hashable,
    policy: Policy,
    index: int,
    state: StepAnalysis,
    looks: list[Observations],
    first_new: int,
) -> dict[str, Any] | None:
    """The step's forecast from the traffic up to its latest look numbered 1 or a multiple of
    FORECAST_EVERY, or up to the decisive look once decided. A forecast costs several looks'
    judging, so it is made once a minute, not every look; the looks it is made at depend on the
    readings alone, so a restarted step reading the same looks says the same."""
    if state.decided:
        basis = state.verdict_look
    else:
        due = [look for n, look in enumerate(looks, start=first_new) if n == 1 or n % FORECAST_EVERY == 0]
        if not due:
            return ctx.analyses.forecast(key)
        basis = due[-1]
    ahead = forecast_from_looks(policy, [basis] if basis is not None else [], index)
    made = None if ahead is None else ahead.to_dict()
    ctx.analyses.keep_forecast(key, made)
    return made


def _last_steps_forecast(
    ctx: StepContext,
    key: Hashable,
    policy: Policy,
    index: int,
    looks: list[Observations],
    judge_after_s: float,
) -> dict[str, Any] | None:
    """The bake's forecast: the last step's, from its looks (those up to `judge_after_s`, read at the
    bake's first tick, or again after a restart), made once and kept."""
    before = [look for look in looks if look.elapsed_s <= judge_after_s]
    if not before:
        return ctx.analyses.forecast(key)
    ahead = forecast_from_looks(policy, before[-1:], index)
    made = None if ahead is None else ahead.to_dict()
    ctx.analyses.keep_forecast(key, made)
    return made


def _against_record(observed: Observations, record: Observations) -> Observations:
    """The new champion's observations with the previous champion's record as the baseline (each
    metric's own series likewise)."""
    per_metric = {
        name: arms.model_copy(update={"baseline": record.per_metric[name].baseline})
        for name, arms in observed.per_metric.items()
        if name in record.per_metric
    }
    return observed.model_copy(
        update={"baseline": record.baseline, "shadow_distance": None, "per_metric": per_metric}
    )


def _outcome(spec: RolloutSpec, result: AnalysisResult, window: dict[str, str], what: str) -> StepOutcome:
    result = result.model_copy(update={"verdict": result.verdict.model_copy(update={"policy": spec.policy})})
    outputs = {**window, Output.VERDICT: result.status, Output.VERDICT_JSON: result.verdict.model_dump_json()}
    reasons = "; ".join(
        dict.fromkeys(c.reason for c in result.verdict.checks if c.reason and c.verdict != "pass")
    )
    if result.status == "running":
        return StepOutcome(state="running", outputs=outputs, message=reasons or what)
    return StepOutcome(
        state="succeeded" if result.status == "pass" else "failed",
        outputs=outputs,
        message=f"{result.status} {what}" + (f": {reasons}" if reasons else ""),
        report_markdown=approval_report(spec, result.verdict),
    )
