"""Who reads the registry's promote-now before every step call: a pod's steps (the only way they
learn of it), not the controller's local runner, which is told directly (`skip_analysis`) and would
otherwise send one registry request per rollout per look."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from workflows.steps import heeding_promote_now
from workflows.steps.base import StepOutcome


@dataclass
class _Reads:
    """Where the registry would be: records each read and answers none (a registry that is down)."""

    reads: list[tuple[str, str]] = field(default_factory=list)

    def version_tags(self, model: str, version: str) -> dict[str, str]:
        self.reads.append((model, version))
        raise ConnectionError("registry down")


@dataclass
class _Context:
    registry: _Reads
    directives: bool


@dataclass
class _Step:
    spec: object


def _spec() -> object:
    from canaryflow.kernel.types import RolloutSpec

    return RolloutSpec(rollout_id="r-1", model="m", baseline_version="1", canary_version="2")


@pytest.mark.parametrize("directives", [True, False])
def test_the_read_happens_only_where_directives_are_heeded(directives: bool, caplog) -> None:
    ran: list[bool] = []

    def step(ctx: object, step_input: object) -> StepOutcome:
        ran.append(True)
        return StepOutcome(state="running", message="not yet")

    ctx = _Context(_Reads(), directives)
    caplog.set_level(logging.WARNING)
    outcome = heeding_promote_now(step)(ctx, _Step(_spec()))  # type: ignore[arg-type]
    assert outcome.state == "running" and ran == [True], "the step runs either way"
    assert ctx.registry.reads == ([("m", "2")] if directives else [])
