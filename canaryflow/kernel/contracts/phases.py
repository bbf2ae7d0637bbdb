"""The phases of a rollout: one set for the state machine, the store, the HTTP API and the metrics.

`canaryflow.kernel.rollout` moves a rollout between them (its docstring draws how); the controller
stores and serves them (`GET /rollouts?state=`, `phase` of every record), the
`canaryflow_controller_rollouts{state=...}` gauge and the shipped dashboards and alerts count them.
A `StrEnum`: each phase is its own string, so stored rows, JSON and label values read as before.
"""

from __future__ import annotations

from enum import StrEnum


class RolloutPhase(StrEnum):
    PENDING = "pending"
    CANARY = "canary"
    BAKING = "baking"  # the last step passed; the analysis goes on at its weight for `bake_s`
    AWAITING_APPROVAL = "awaiting_approval"
    PROMOTING = "promoting"
    WATCHING = "watching"  # promoted; the new champion against the previous one's record for `watch_s`
    PROMOTED = "promoted"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    SUPERSEDING = "superseding"
    SUPERSEDED = "superseded"
    FAILED = "failed"
