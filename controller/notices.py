"""Which rollout transitions are announced, and the notice each one becomes.

Pure: from a transition and the rollout as the store holds it (steps with their verdicts, transitions,
links), the `RolloutNotice` the `Notifier` port delivers. The reconciler calls it after a transition
was stored, so a notice never announces something the store does not hold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from canaryflow.kernel.contracts.notifications import CheckSummary, NoticeEvent, RolloutNotice
from canaryflow.kernel.contracts.phases import RolloutPhase
from canaryflow.kernel.rollout import RolloutEvent, StepStarted, Transition
from controller.rollout.records import RolloutDetail, StepRecord

_BY_PHASE = {
    RolloutPhase.AWAITING_APPROVAL: NoticeEvent.AWAITING_APPROVAL,
    RolloutPhase.PROMOTED: NoticeEvent.PROMOTED,
    RolloutPhase.ROLLED_BACK: NoticeEvent.ROLLED_BACK,
    RolloutPhase.FAILED: NoticeEvent.FAILED,
}


def notice_event(change: Transition, event: RolloutEvent) -> NoticeEvent | None:
    """started, step_passed (a later step began: the one before passed), or the phase reached."""
    before, after = change.before.phase, change.after.phase
    if before == RolloutPhase.PENDING and after == RolloutPhase.CANARY:
        return NoticeEvent.STARTED
    if isinstance(event, StepStarted) and event.index > 0:
        return NoticeEvent.STEP_PASSED
    return _BY_PHASE.get(after) if after != before else None


def _checks(step: StepRecord | None) -> list[CheckSummary]:
    verdict = (step.verdict if step else None) or {}
    return [
        CheckSummary(
            metric=str(c.get("metric", "?")),
            verdict=str(c.get("verdict", "?")),
            reason=str(c.get("reason", "")),
        )
        for c in verdict.get("checks") or []
        if isinstance(c, dict)
    ]


def _step_about(detail: RolloutDetail, kind: NoticeEvent, event: RolloutEvent) -> StepRecord | None:
    if kind is NoticeEvent.STARTED:
        return None
    steps = sorted(detail.steps, key=lambda s: s.index)
    if kind is NoticeEvent.STEP_PASSED and isinstance(event, StepStarted):
        return next((s for s in steps if s.index == event.index - 1), None)
    judged = [s for s in steps if s.verdict]
    return judged[-1] if judged else (steps[-1] if steps else None)


def _reason(detail: RolloutDetail, change: Transition, kind: NoticeEvent) -> str:
    if kind in (NoticeEvent.ROLLED_BACK, NoticeEvent.FAILED):
        causes = [
            t.reason
            for t in detail.transitions
            if t.to_phase in (RolloutPhase.ROLLING_BACK, RolloutPhase.FAILED)
        ]
        if causes:
            return causes[-1]
    return change.reason


def notice_links(
    detail: RolloutDetail, templates: Mapping[str, str], workflow_link: Callable[[str], str] | None
) -> dict[str, str]:
    """The operator's link templates ({rollout}, {model}, {version}), the workflow, the pull request."""
    values = {"rollout": detail.id, "model": detail.model, "version": detail.canary_version}
    links = {name: template.format(**values) for name, template in templates.items()}
    if workflow_link is not None and detail.workflow:
        links["workflow"] = workflow_link(detail.workflow)
    if detail.approval_url:
        links["pull_request"] = detail.approval_url
    return links


def build_notice(
    detail: RolloutDetail,
    change: Transition,
    event: RolloutEvent,
    kind: NoticeEvent,
    at: float,
    links: Mapping[str, str],
) -> RolloutNotice:
    step = _step_about(detail, kind, event)
    return RolloutNotice(
        event=kind,
        rollout_id=detail.id,
        model=detail.model,
        baseline_version=detail.baseline_version,
        canary_version=detail.canary_version,
        environment=detail.environment,
        phase=detail.phase,
        step=step.index + 1 if step else None,
        weight=step.weight if step else detail.weight,
        at=at,
        reason=_reason(detail, change, kind),
        checks=_checks(step),
        advice=_advice(step),
        links=dict(links),
    )


def _advice(step: StepRecord | None) -> list[str]:
    forecast = ((step.verdict if step else None) or {}).get("forecast")
    advice = forecast.get("advice") if isinstance(forecast, dict) else None
    return [str(line) for line in advice] if isinstance(advice, list) else []
