"""The approval gate against a local server speaking GitHub's REST API, checking the exact requests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from canaryflow.kernel.ports import ApprovalGate
from canaryflow.kernel.types import ApprovalRequest, Check, RolloutSpec, Verdict
from gitops.git import GitRepo
from gitops.pullrequest import ApprovalError, GitHubApproval, branch_for, github_client
from gitops.report import approval_report
from tests.gitops.conftest import git, remote_file
from tests.gitops.github_double import GitHubServer

TOKEN = "ghp_pr_token_123"
REPO = "/api/v3/repos/acme/gitops"


@pytest.fixture
def github() -> Iterator[GitHubServer]:
    with GitHubServer("acme", "gitops") as server:
        yield server


@pytest.fixture
def gate(github: GitHubServer) -> GitHubApproval:
    return GitHubApproval(github_client(github.url, TOKEN), "acme/gitops", "main")


def requests_made(github: GitHubServer) -> list[tuple[str, str, object]]:
    return [(r.method, r.path, r.body) for r in github.double.requests]


def test_github_approval_is_an_approval_gate(gate: GitHubApproval) -> None:
    assert isinstance(gate, ApprovalGate)


def test_request_pushes_the_promotion_branch_and_opens_a_pull_request(
    github: GitHubServer, git_remote: Path, make_settings, spec: RolloutSpec
) -> None:
    repo = GitRepo(make_settings(git_remote))
    gate = GitHubApproval(
        github_client(github.url, TOKEN),
        "acme/gitops",
        "main",
        push_branch=lambda s, branch: repo.push_branch(s, 100, "promote", branch),
    )
    report = approval_report(
        spec, Verdict(decision="promote", checks=[Check(metric="latency_p99", verdict="pass")])
    )
    request = gate.request(spec, report)

    assert (request.id, request.url, request.head_sha) == ("1", f"{github.url}/acme/gitops/pull/1", "a" * 40)
    assert request.opened_at is not None and abs(request.opened_at - time.time()) < 5
    assert requests_made(github) == [
        ("GET", REPO, None),
        ("GET", f"{REPO}/pulls", None),
        (
            "POST",
            f"{REPO}/pulls",
            {
                "title": "Promote minilm v2 in production (rollout r-42)",
                "body": report,
                "base": "main",
                "head": "canaryflow/r-42",
            },
        ),
    ]
    assert github.double.requests[1].query == {
        "state": ["open"],
        "head": ["acme:canaryflow/r-42"],
        "sort": ["created"],
        "direction": ["desc"],
        "per_page": ["100"],
    }
    assert {r.authorization for r in github.double.requests} == {f"token {TOKEN}"}
    # The branch holds the promotion commit on top of main; main itself is untouched.
    routing = remote_file(
        git_remote, "apps/minilm/overlays/production/routing-configmap.yaml", "canaryflow/r-42"
    )
    assert "version: '2'" in routing and "version: '1'" not in routing
    assert "apps/" not in git("--git-dir", str(git_remote), "ls-tree", "--name-only", "main")

    # Asking again finds the open pull request instead of opening a second one.
    again = gate.request(spec, report)
    assert again == request
    assert [r.method for r in github.double.requests].count("POST") == 1


def test_review_states_map_to_approval_states(
    github: GitHubServer, gate: GitHubApproval, spec: RolloutSpec
) -> None:
    github.double.roles.update(alice="write", bob="maintain")
    request = gate.request(spec, "report")
    number = int(request.id)
    assert gate.state(request) == "pending"
    github.double.add_review(number, "alice", "COMMENTED")
    assert gate.state(request) == "pending"
    github.double.add_review(number, "alice", "APPROVED")
    assert gate.state(request) == "approved"
    github.double.add_review(number, "bob", "CHANGES_REQUESTED")
    assert gate.state(request) == "rejected"
    github.double.add_review(number, "bob", "APPROVED")  # bob's latest review stands
    assert gate.state(request) == "approved"
    reads = [(r.method, r.path) for r in github.double.requests[3:5]]
    assert reads == [("GET", f"{REPO}/pulls/1"), ("GET", f"{REPO}/pulls/1/reviews")]


def test_complete_merges_at_the_reviewed_head_once(
    github: GitHubServer, gate: GitHubApproval, spec: RolloutSpec
) -> None:
    request = gate.request(spec, "report")
    github.double.roles["alice"] = "admin"
    github.double.add_review(1, "alice", "APPROVED")
    gate.complete(request)
    merge = github.double.requests[-1]
    assert (merge.method, merge.path) == ("PUT", f"{REPO}/pulls/1/merge")
    assert merge.body == {
        "merge_method": "merge",
        "sha": "a" * 40,
        "commit_title": "Promote minilm v2 in production (rollout r-42) (#1)",
    }
    assert gate.state(request) == "approved"
    before = len(github.double.requests)
    gate.complete(request)  # already merged: only reads
    assert [r.method for r in github.double.requests[before:]] == ["GET"]


def test_only_reviews_of_the_requested_head_by_writers_after_opening_count(
    github: GitHubServer, gate: GitHubApproval, spec: RolloutSpec
) -> None:
    github.double.roles.update(reader="read", triager="triage", writer="write")
    request = gate.request(spec, "report")
    github.double.add_review(1, "reader", "APPROVED")
    github.double.add_review(1, "triager", "APPROVED")
    github.double.add_review(1, "stranger", "APPROVED")  # not a collaborator: GitHub answers 404
    assert gate.state(request) == "pending"
    github.double.add_review(1, "writer", "APPROVED", commit_id="d" * 40)  # another commit
    github.double.add_review(1, "writer", "APPROVED", submitted_at="2020-01-01T00:00:00Z")  # before
    assert gate.state(request) == "pending"
    github.double.add_review(1, "writer", "APPROVED")
    assert gate.state(request) == "approved"
    permission_reads = [r for r in github.double.requests if r.path.endswith("/permission")]
    assert {r.path.split("/")[-2] for r in permission_reads} == {"reader", "triager", "stranger", "writer"}
    assert gate.state(request) == "approved"  # cached: no second read of any permission
    assert len([r for r in github.double.requests if r.path.endswith("/permission")]) == 4
    github.double.push(1, "e" * 40)  # the branch moved: merging refuses a head nobody reviewed
    with pytest.raises(ApprovalError, match="409"):
        gate.complete(request)


def test_comment_posts_on_the_pull_request_issue(
    github: GitHubServer, gate: GitHubApproval, spec: RolloutSpec
) -> None:
    request = gate.request(spec, "report")
    gate.comment(request, "Step 2 passed: canary at 50%.")
    last = github.double.requests[-1]
    assert (last.method, last.path, last.body) == (
        "POST",
        f"{REPO}/issues/1/comments",
        {"body": "Step 2 passed: canary at 50%."},
    )


def test_closed_unmerged_pull_request_is_a_rejection(
    github: GitHubServer, gate: GitHubApproval, spec: RolloutSpec
) -> None:
    request = gate.request(spec, "report")
    github.double.pulls[1]["state"] = "closed"
    assert gate.state(request) == "rejected"


def test_github_refusals_become_approval_errors(
    github: GitHubServer, gate: GitHubApproval, spec: RolloutSpec
) -> None:
    request = gate.request(spec, "report")
    github.double.mergeable = False
    with pytest.raises(
        ApprovalError, match="merge pull request #1: GitHub answered 405: Pull Request is not mergeable"
    ):
        gate.complete(request)
    with pytest.raises(ApprovalError, match="404"):
        gate.state(ApprovalRequest(id="77"))


def test_clients_for_github_com_and_enterprise() -> None:
    assert github_client("https://github.com", "t").session.base_url == "https://api.github.com"
    enterprise = github_client("https://ghe.example.com/", "t")
    assert enterprise.session.base_url == "https://ghe.example.com/api/v3"


def test_repository_must_be_owner_slash_name(gate: GitHubApproval) -> None:
    with pytest.raises(ValueError, match="github_repo"):
        GitHubApproval(gate.client, "gitops")


def test_report_has_a_table_of_checks_and_the_plot(spec: RolloutSpec) -> None:
    verdict = Verdict(
        decision="rollback",
        checks=[
            Check(metric="latency_p99", verdict="fail", reason="p99 +41%", p_value=0.00123, effect=0.41),
            Check(metric="error_rate", verdict="pass"),
        ],
    )
    report = approval_report(spec, verdict, plot="https://ci.example.com/r-42/analysis.png")
    assert "| `r-42` | v1 | v2 | default | **rollback** |" in report
    assert "| latency_p99 | ❌ fail | p99 +41% | effect=0.41, p_value=0.00123 |" in report
    assert "| error_rate | ✅ pass | — | — |" in report
    assert "![canary vs baseline](https://ci.example.com/r-42/analysis.png)" in report


def test_branch_name_belongs_to_the_rollout(spec: RolloutSpec) -> None:
    assert branch_for(spec) == "canaryflow/r-42"
