"""GitHub approvals count only for the exact pull request a rollout opened (issue 15, finding 1 and 2).

The reconciler drives the real local runner; reviews arrive as signed deliveries through the real app,
and the reviewer's permission is read through `GitHubApproval` from the GitHub API double (the real
`GET /repos/{owner}/{repo}/collaborators/{user}/permission` JSON). A review of another repository, of
PR number `true`, of an older head, from before the request, by a reader, or a replayed capture under a
new delivery id never releases the gate.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from fastapi.testclient import TestClient

from controller.api.api_context import ControllerContext
from controller.api.controller_app import create_app
from controller.observability import ControllerMetrics
from controller.webhooks.signing import sign_github
from gitops.pullrequest import GitHubApproval, github_client
from tests.gitops.github_double import GitHubServer, iso

from .conftest import SECRET
from .harness import HEAD_SHA, Steps, add_rollout, make, policy

PR_URL = "https://github.com/org/gitops/pull/7"


@pytest.fixture
def github():
    with GitHubServer("org", "gitops") as server:
        server.double.roles.update(alice="write", carol="admin", rita="read")
        yield server


@pytest.fixture
def world(tmp_path, github, settings):
    reviewers = GitHubApproval(github_client(github.url, "token"), "org/gitops")
    reconciler, store, _, _ = make(tmp_path, Steps(), policy(5, approval=True), reviewers=reviewers)
    rid = add_rollout(store)
    for _ in range(4):
        reconciler.tick()
    assert store.get(rid).phase == "awaiting_approval"
    app = create_app(ControllerContext(settings=settings, store=store, metrics=ControllerMetrics(store)))
    with TestClient(app) as client:
        yield reconciler, store, rid, client


def review(
    *,
    repo: str = "org/gitops",
    number: object = 7,
    commit: str = HEAD_SHA,
    login: str = "alice",
    state: str = "approved",
    at: float | None = None,
) -> dict:
    return {
        "action": "submitted",
        "review": {
            "id": 80,
            "user": {"login": login},
            "state": state,
            "commit_id": commit,
            "submitted_at": iso(at),
        },
        "pull_request": {"number": number, "html_url": PR_URL, "head": {"sha": commit}},
        "repository": {"full_name": repo},
        "sender": {"login": login},
    }


def send(client, doc: dict, delivery: str | None = None, body: bytes | None = None):
    body = body if body is not None else json.dumps(doc).encode()
    headers = {
        "X-GitHub-Event": "pull_request_review",
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign_github(SECRET, body),
    }
    return client.post("/webhooks/github", content=body, headers=headers)


def settle(reconciler, n: int = 3) -> None:
    for _ in range(n):
        reconciler.tick()


@pytest.mark.parametrize(
    ("why", "doc"),
    [
        ("another repository, same number", review(repo="mallory/gitops")),
        ("another pull request", review(number=8)),
        ("an older head", review(commit="0" * 40)),
        ("a reviewer with read access", review(login="rita")),
        ("a reviewer GitHub does not know", review(login="eve")),
        ("a review from before the request", review(at=time.time() - 600)),
    ],
)
def test_a_review_of_anything_else_never_approves(world, why, doc):
    reconciler, store, rid, client = world
    assert send(client, doc).status_code == 202, why
    settle(reconciler)
    got = store.get(rid)
    assert got.phase == "awaiting_approval", why
    assert got.waiting_reason == f"waiting for approval {PR_URL}"


def test_the_bound_review_approves_and_a_rejection_by_a_writer_rolls_back(world, github):
    reconciler, store, rid, client = world
    assert send(client, review()).status_code == 202
    settle(reconciler)
    detail = store.detail(rid)
    assert detail.phase == "promoted"
    assert any(t.reason == "approved by alice" for t in detail.transitions)
    assert [r.path for r in github.double.requests] == [
        "/api/v3/repos/org/gitops",
        "/api/v3/repos/org/gitops/collaborators/alice/permission",
    ]


def test_changes_requested_by_an_admin_rolls_back(world):
    reconciler, store, rid, client = world
    send(client, review(login="carol", state="changes_requested"))
    settle(reconciler)
    detail = store.detail(rid)
    assert detail.phase == "rolled_back" and "sha-rollback" in [c.sha for c in detail.commits]


def test_pull_request_number_true_is_refused(world):
    _, store, _, client = world
    answer = send(client, review(number=True))
    assert answer.status_code == 422 and "pull_request.number" in answer.json()["error"]
    assert [i for i in store.inbox() if i.kind == "approval"] == []


def test_a_captured_delivery_replayed_under_a_new_id_is_a_duplicate(world):
    _, store, _, client = world
    body = json.dumps(review(login="rita")).encode()
    assert send(client, {}, delivery="d-1", body=body).status_code == 202
    again = send(client, {}, delivery="d-2", body=body)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert len([i for i in store.inbox() if i.kind == "approval"]) == 1


def test_a_review_older_than_the_allowed_age_is_refused(world, settings):
    _, store, _, client = world
    old = time.time() - settings.approval_max_age_s - 60
    answer = send(client, review(at=old))
    assert answer.status_code == 401 and "stale delivery" in answer.json()["error"]
    assert [i for i in store.inbox() if i.kind == "approval"] == []


def test_without_github_api_access_no_webhook_review_counts(tmp_path, settings):
    reconciler, store, _, _ = make(tmp_path, Steps(), policy(5, approval=True))
    rid = add_rollout(store)
    settle(reconciler, 4)
    app = create_app(ControllerContext(settings=settings, store=store, metrics=ControllerMetrics(store)))
    with TestClient(app) as client:
        assert send(client, review()).status_code == 202
    settle(reconciler)
    assert store.get(rid).phase == "awaiting_approval"
