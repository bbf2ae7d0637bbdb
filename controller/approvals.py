"""Which recorded pull-request decision releases a rollout's approval gate: only one bound to it.

A signed GitHub delivery proves that GitHub sent it, nothing more. It counts for a rollout when it is
about the configured GitOps repository, the pull request number the rollout's request opened, the
promotion commit that request asked about (a review of an older head does not carry over), was
submitted after the request, and comes from a reviewer with write access (read from GitHub, cached).
"""

from __future__ import annotations

from canaryflow.kernel.ports import ReviewAuthority
from controller.rollout.records import RolloutRecord
from controller.rollout.store import RolloutStore


def bound_decision(
    store: RolloutStore, reviewers: ReviewAuthority | None, record: RolloutRecord
) -> tuple[str | None, str | None]:
    """(outcome, actor) of the newest decision bound to `record`'s pull request; (None, None) if none.

    Without `reviewers` (no GitHub API access configured) nothing can be checked, so nothing counts."""
    number = record.approval_id or ""
    if reviewers is None or not number.isdigit() or not record.approval_head_sha:
        return None, None
    since = record.approval_opened_at or record.started_at or record.created_at
    decisions = store.decisions_for(reviewers.repository, int(number), record.approval_head_sha, since)
    for outcome, actor in decisions:
        if actor and reviewers.can_approve(actor):
            return outcome, actor
    return None, None
