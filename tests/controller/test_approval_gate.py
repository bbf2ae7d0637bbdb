"""The approval gate read through `ApprovalGate.state` (no webhook): the real `GitHubApproval` against the
local server speaking GitHub's REST API (tests/gitops/github_double.py)."""

from __future__ import annotations

import pytest

from gitops.pullrequest import GitHubApproval, github_client
from tests.gitops.github_double import GitHubServer

from .harness import awaiting_approval


@pytest.fixture
def github():
    with GitHubServer("acme", "gitops") as server:
        server.double.roles.update(bob="write", rita="read")
        yield server


@pytest.mark.parametrize(
    ("review", "decision"), [("APPROVED", "promoted"), ("CHANGES_REQUESTED", "rolled_back")]
)
def test_review_on_github_decides(tmp_path, github, review, decision):
    gate = GitHubApproval(github_client(github.url, "token"), "acme/gitops", "main")
    reconciler, store, rid = awaiting_approval(tmp_path, gate)
    waiting = store.get(rid)
    assert waiting.approval_url and waiting.approval_url.startswith(github.url)
    reconciler.tick()
    assert store.get(rid).phase == "awaiting_approval"  # no review yet: still waiting
    github.double.add_review(int(waiting.approval_id or 0), "bob", review)
    for _ in range(3):
        reconciler.tick()
    assert store.get(rid).phase == decision


def test_a_review_by_a_reader_or_of_another_head_waits(tmp_path, github):
    gate = GitHubApproval(github_client(github.url, "token"), "acme/gitops", "main")
    reconciler, store, rid = awaiting_approval(tmp_path, gate)
    number = int(store.get(rid).approval_id or 0)
    github.double.add_review(number, "rita", "APPROVED")
    github.double.add_review(number, "bob", "APPROVED", commit_id="0" * 40)
    for _ in range(3):
        reconciler.tick()
    assert store.get(rid).phase == "awaiting_approval"
