"""A whole rollout replayed over one recorded request log: every step, the bake, the watch.

`replay.replay_log` judges one step (and a bake). A rollout is more: its steps in order, each from
the look at which the one before it passed, each with its warm-up; after the last, the bake; then
promotion; then the watch, where the new champion serves everything and is compared with the
previous champion's record (what the baseline served during the last step, as the live watch reads
it back from the metrics source). A regression that begins after promotion is only caught there, so
only a replay of the whole rollout shows what the policy would have done with it.

The log is what a live rollout recorded: requests labelled by the version that served them
("canary" is the new version throughout, before and after promotion). Each phase sees only the
requests after its start, judged by the same engine calls as live (the same looks, warm-up, change
windows and persistence), so its decisions are the live ones on the same counts. Requests the
previous champion served after promotion (a router still draining) are left out of the watch.

Pure: arrays in, a record out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from canaryflow.kernel.analysis.replay import RequestLog, replay_log
from canaryflow.kernel.types import Verdict

if TYPE_CHECKING:
    from policies.model import Policy

PhaseKind = Literal["step", "bake", "watch"]


@dataclass(frozen=True)
class PhaseReplay:
    """One phase: where it started and what it decided (log time, seconds)."""

    phase: str  # "step 1", "step 2", "bake", "watch"
    kind: PhaseKind
    started_at_s: float
    decision: str  # "promote" (the phase passed), "rollback", "inconclusive"
    decided_at_s: float | None
    verdict: Verdict


@dataclass(frozen=True)
class RolloutReplay:
    """The rollout's outcome: the decision, the phase that made it, when; and every phase."""

    decision: str  # "promote": promoted and kept through the watch; "rollback"; "inconclusive"
    phase: str
    decided_at_s: float | None
    promoted_at_s: float | None
    watch_complete: bool
    phases: list[PhaseReplay]

    def to_dict(self) -> dict[str, object]:
        return {
            "decision": self.decision,
            "phase": self.phase,
            "decided_at_s": self.decided_at_s,
            "promoted_at_s": self.promoted_at_s,
            "watch_complete": self.watch_complete,
            "phases": [
                {
                    "phase": p.phase,
                    "kind": p.kind,
                    "started_at_s": p.started_at_s,
                    "decision": p.decision,
                    "decided_at_s": p.decided_at_s,
                    "verdict": p.verdict.model_dump(mode="json"),
                }
                for p in self.phases
            ],
        }


def _after(log: RequestLog, start: float, end: float = np.inf, mask: np.ndarray | None = None) -> RequestLog:
    keep = (log.t > start) & (log.t <= end)
    if mask is not None:
        keep &= mask
    return RequestLog(t=log.t[keep], canary=log.canary[keep], latency_s=log.latency_s[keep], ok=log.ok[keep])


def replay_rollout(policy: Policy, log: RequestLog, *, start_s: float | None = None) -> RolloutReplay:
    """Run the whole policy over `log` (see the module docstring); times are the log's own."""
    log = log.sorted()
    if log.t.shape[0] == 0:
        raise ValueError("the request log holds no requests")
    every = policy.evaluate_every_s
    start = float(np.floor(log.t[0] / every) * every) if start_s is None else float(start_s)
    phases: list[PhaseReplay] = []
    last = len(policy.steps) - 1
    step_start = start
    for index in range(len(policy.steps)):
        part = _after(log, step_start)
        name = f"step {index + 1}"
        if part.t.shape[0] == 0:
            return _ended(phases, name, step_start)
        verdict = replay_log(policy, part, step_index=index, start_s=step_start)
        phases.append(PhaseReplay(name, "step", step_start, verdict.decision, verdict.decided_at_s, verdict))
        if verdict.decision != "promote" or verdict.decided_at_s is None:
            return _final(phases, verdict.decision, name, verdict.decided_at_s)
        passed_at = verdict.decided_at_s
        if index < last:
            step_start = passed_at
    # The bake: the last step's analysis goes on at its weight (same looks, same windows).
    if policy.bake_s > 0:
        baked = replay_log(
            policy, _after(log, step_start), step_index=last, start_s=step_start, bake_s=policy.bake_s
        )
        if baked.decision == "promote" and baked.decided_at_s is None:
            baked = baked.model_copy(update={"decision": "inconclusive"})
        phases.append(PhaseReplay("bake", "bake", passed_at, baked.decision, baked.decided_at_s, baked))
        if baked.decision != "promote" or baked.decided_at_s is None:
            decision = baked.decision if baked.decided_at_s is not None else "inconclusive"
            return _final(phases, decision, "bake", baked.decided_at_s)
        promoted_at = baked.decided_at_s
    else:
        promoted_at = passed_at
    if policy.watch_s <= 0:
        return RolloutReplay("promote", phases[-1].phase, promoted_at, promoted_at, True, phases)
    return _watch(policy, log, phases, step_start, promoted_at)


def _watch(
    policy: Policy, log: RequestLog, phases: list[PhaseReplay], last_step_start: float, promoted_at: float
) -> RolloutReplay:
    """The new champion after promotion against the previous champion's record of the last step."""
    record = _after(log, last_step_start, promoted_at, ~log.canary)
    served = _after(log, promoted_at, mask=log.canary)
    if served.t.shape[0] == 0 or record.t.shape[0] == 0:
        return RolloutReplay("promote", "bake", promoted_at, promoted_at, False, phases)
    # The watch's own time starts at promotion; the record is all there at its first look.
    watch_log = RequestLog(
        t=np.concatenate([np.zeros(record.t.shape[0]), served.t - promoted_at]),
        canary=np.concatenate([np.zeros(record.t.shape[0], dtype=bool), served.canary]),
        latency_s=np.concatenate([record.latency_s, served.latency_s]),
        ok=np.concatenate([record.ok, served.ok]),
    )
    verdict = replay_log(
        policy,
        watch_log,
        step_index=len(policy.steps) - 1,
        canary_weight=100.0,
        start_s=0.0,
        hold_until_s=policy.watch_s,
        recorded_baseline=True,
    )
    decided = None if verdict.decided_at_s is None else verdict.decided_at_s + promoted_at
    verdict = verdict.model_copy(update={"decided_at_s": decided})
    complete = decided is not None
    decision = verdict.decision if complete else "inconclusive"
    phases.append(PhaseReplay("watch", "watch", promoted_at, decision, decided, verdict))
    if verdict.decision == "rollback":
        return RolloutReplay("rollback", "watch", decided, promoted_at, True, phases)
    return RolloutReplay(
        "promote", "watch" if complete else "bake", decided or promoted_at, promoted_at, complete, phases
    )


def _ended(phases: list[PhaseReplay], name: str, at: float) -> RolloutReplay:
    """The log ends before `name` starts: undecided there."""
    return RolloutReplay("inconclusive", name, None, None, False, phases)


def _final(phases: list[PhaseReplay], decision: str, name: str, at: float | None) -> RolloutReplay:
    return RolloutReplay(decision, name, at, None, False, phases)
