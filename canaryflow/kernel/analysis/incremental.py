"""A live step judged look by look: what it has read and judged so far, so each tick judges only its
new looks and costs the same in a step's first minute as in its thirtieth.

`analyze_looks` judges every look since the warm-up on each call: a pure function of the readings,
but its cost grows with the step's age (every look re-read, rebuilt and re-judged). `StepAnalysis`
keeps the looks read so far as the engine's arrays (an `ObservationSeries`) and how many of them
were judged; `advance` appends the new looks and judges only those (`evaluate_series(from_look=)`).

Why the decisions are the same. A look's verdict depends on the cumulative counts at it and at the
looks before it (the warm-up's end, the change windows' bounds, the pairing of latencies by time, the
second half of the data for a failure to persist), never on a later look. So each new look judged
against the kept history gets the verdict a full re-judging gives it, and since every look judged
before was undecided (else the step ended), the first decisive new look is the first decisive look
of all. `tests/analysis/test_incremental.py` checks it against `analyze_looks` on many seeds,
including a state rebuilt from the looks read so far (a restarted controller) that goes on.

The state is a cache: built again from the same looks (Prometheus keeps them) it is the same, which
is what a restarted controller or an Argo analysis pod does. Pure: no I/O, nothing mutated in place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from canaryflow.kernel.analysis import AnalysisResult
from canaryflow.kernel.analysis.judge import WindowMemo, evaluate_series, evidence, thin_evidence
from canaryflow.kernel.analysis.observations import Observations
from canaryflow.kernel.analysis.paired import pair_by_time
from canaryflow.kernel.analysis.series import ObservationSeries, concat
from canaryflow.kernel.types import CheckEvidence

if TYPE_CHECKING:
    from policies.model import Policy


@dataclass(frozen=True)
class StepAnalysis:
    """One traffic step's (or bake's) analysis so far.

    `judge_after_s`: looks at or before this elapsed time are never judged (a bake: the last step
    passed on them; they still place the windows and the pairing). `series`: every look read,
    oldest first, counted from the warm-up's end, its latencies paired by time (`pair_by_time`: the
    next call pairs only its new looks). `judged`: looks judged so far. `result`: the
    verdict at the first decisive look once there is one (it stands, as in a replay), else at the
    last look judged. `verdict_look`: the reading that verdict is at (the step's forecast's)."""

    step_index: int = 0
    hold_until_s: float | None = None
    judge_after_s: float = -math.inf
    canary_weight: float | None = None
    series: ObservationSeries | None = None
    judged: int = 0
    result: AnalysisResult | None = None
    verdict_look: Observations | None = None
    windows: WindowMemo = field(default_factory=dict)  # completed change windows, judged once each
    # Each check's statistics at every look judged so far, unthinned (the verdict shows them thinned).
    evidence: tuple[CheckEvidence, ...] = ()

    @property
    def looks(self) -> int:
        """Looks read so far: the next call's readings start at look `looks + 1` (1-based, as the
        metrics source counts them)."""
        return 0 if self.series is None else len(self.series)

    @property
    def decided(self) -> bool:
        return self.result is not None and self.result.status != "running"


def advance(policy: Policy, state: StepAnalysis, new_looks: Sequence[Observations]) -> StepAnalysis:
    """`state` with `new_looks` (the readings after the ones it holds, oldest first) read and judged.

    The result is the one `analyze_looks` gives on all the looks read so far (with the same
    `step_index`, `hold_until_s`, `canary_weight`, and `from_look` the first look after
    `judge_after_s`). Once decided the state stays as it is: the first decisive look decides. With
    no look to judge yet (a bake's looks up to `judge_after_s`), `result` stays None."""
    if state.decided or not new_looks:
        return state
    added = ObservationSeries.from_observations(new_looks)
    # Latencies paired by time (as `evaluate_series` pairs them) only for the new looks' intervals.
    series = pair_by_time(added if state.series is None else concat(state.series, added), state.series)
    skipped = int(np.searchsorted(series.elapsed_s, state.judge_after_s, side="right"))
    first = max(state.judged, skipped)
    if first >= len(series):
        return replace(state, series=series)
    windows = dict(state.windows)  # this call's additions go to the new state only
    evaluation = evaluate_series(
        policy,
        series,
        window_memo=windows,
        step_index=state.step_index,
        canary_weight=state.canary_weight,
        warmed_up=True,
        hold_until_s=state.hold_until_s,
        from_look=first,
    )
    decided = evaluation.first_decision()
    at = len(evaluation.elapsed_s) - 1 if decided is None else decided
    elapsed = [round(float(e), 3) for e in evaluation.elapsed_s[: at + 1]]
    trail = _extended(state.evidence, evidence(evaluation, 0, at, thin=False), elapsed)
    verdict = evaluation.verdict_at(at).model_copy(update={"evidence": thin_evidence(list(trail))})
    result = AnalysisResult(status=evaluation.status_at(at), verdict=verdict)
    look = first + at - state.looks  # the verdict's look among the new ones
    return replace(
        state,
        series=series,
        judged=len(series),
        result=result,
        verdict_look=new_looks[look],
        windows=windows,
        evidence=trail,
    )


def _extended(
    kept: tuple[CheckEvidence, ...], new: list[CheckEvidence], elapsed_s: list[float]
) -> tuple[CheckEvidence, ...]:
    """Each check's looks judged before, then the new ones at `elapsed_s`. A check without statistics
    in one of the two (no data yet) reads None there, as judging all the looks at once shows it."""
    before = list(kept[0].elapsed_s) if kept else []
    old = {(c.metric, c.kind): c for c in kept}
    add = {(c.metric, c.kind): c for c in new}
    out = []
    for key in [*old, *(k for k in add if k not in old)]:
        first, then = old.get(key), add.get(key)
        base = first or then
        assert base is not None
        out.append(
            base.model_copy(
                update={
                    "elapsed_s": [*before, *elapsed_s],
                    **{
                        f: [
                            *(getattr(first, f) if first else [None] * len(before)),
                            *(getattr(then, f) if then else [None] * len(elapsed_s)),
                        ]
                        for f in ("estimate", "lower", "upper")
                    },
                }
            )
        )
    return tuple(out)
