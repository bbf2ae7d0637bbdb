"""Rollouts whose steps do nothing, for the benchmarks that measure the controller's own loop at
scale (bench/controller.py's loop phases, bench/fleet_shards.py): every analysis answers "not
yet", every other step succeeds at once, so git, the registry and Prometheus are left out."""

from __future__ import annotations

import time
from typing import Any

from controller.rollout.records import RolloutRecord
from controller.rollout.store import RolloutStore
from workflows.steps.base import StepOutcome


def idle_step(node: Any, step_input: Any) -> StepOutcome:
    """The local runner's step function: analyses never end, the rest succeed with dummy outputs."""
    if node.step in ("analyze", "bake", "watch"):
        return StepOutcome(state="running", message="not enough samples yet")
    return StepOutcome(state="succeeded", outputs={o: "0" * 40 for o in node.outputs})


def seed_rollouts(store: RolloutStore, prefix: str, count: int) -> None:
    """`count` rollouts waiting to start, one model each (`<prefix><i>`, v1 -> v2), oldest first."""
    now = time.time()
    for i in range(count):
        store.create_rollout(
            RolloutRecord(
                id=f"{prefix}{i}-v2", model=f"{prefix}{i}", baseline_version="1", canary_version="2",
                created_at=now + i * 1e-3, updated_at=now,
            )
        )  # fmt: skip
