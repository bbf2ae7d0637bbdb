"""`GitHubApproval`: the promotion gate as a GitHub pull request, behind the `ApprovalGate` port.

`request` pushes the promotion commit to a branch of its own (`canaryflow/<rollout-id>`) and opens a
pull request onto the GitOps branch whose body is the analysis report; reviewers approve or request
changes; `complete` merges it, which is the promotion landing in git. Works with github.com and
GitHub Enterprise (github3.py builds the API URL from the base URL).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import github3
from github3.exceptions import GitHubError

from canaryflow.kernel.types import ApprovalRequest, ApprovalState, RolloutSpec

log = logging.getLogger(__name__)

BranchPusher = Callable[[RolloutSpec, str], object]
# The review states that stand until the same reviewer submits another one.
_STANDING = {"APPROVED", "CHANGES_REQUESTED", "DISMISSED"}


class ApprovalError(RuntimeError):
    """GitHub refused a call; the message names the call and GitHub's reason."""


def github_client(base_url: str, token: str | None) -> github3.GitHub:
    """A github3.py session for github.com or, for any other base URL, a GitHub Enterprise host."""
    host = base_url.rstrip("/")
    if host in ("https://github.com", "https://api.github.com"):
        return github3.GitHub(token=token or "")
    return github3.GitHubEnterprise(host, token=token or "")


def branch_for(spec: RolloutSpec) -> str:
    return f"canaryflow/{spec.rollout_id}"


class GitHubApproval:
    def __init__(
        self,
        client: github3.GitHub,
        repository: str,
        base_branch: str = "main",
        *,
        push_branch: BranchPusher | None = None,
        merge_method: str = "merge",
    ) -> None:
        owner, sep, name = repository.partition("/")
        if not (owner and sep and name) or "/" in name:
            raise ValueError(f"github_repo: {repository!r} is not owner/name")
        self.client, self.owner, self.name = client, owner, name
        self.base_branch = base_branch
        self.push_branch = push_branch
        self.merge_method = merge_method

    def request(self, spec: RolloutSpec, report_markdown: str) -> ApprovalRequest:
        """Open (or find the already open) pull request for promoting the canary of `spec`."""
        branch = branch_for(spec)
        if self.push_branch is not None:
            self.push_branch(spec, branch)
        title = (
            f"Promote {spec.model} v{spec.canary_version} in {spec.environment} (rollout {spec.rollout_id})"
        )
        with _github("open pull request"):
            repo = self.client.repository(self.owner, self.name)
            existing = next(iter(repo.pull_requests(state="open", head=f"{self.owner}:{branch}")), None)
            pull = existing or repo.create_pull(title, self.base_branch, branch, body=report_markdown)
        if pull is None:
            raise ApprovalError(f"open pull request: GitHub returned nothing for {branch}")
        log.info("approval for %s: pull request #%s %s", spec.rollout_id, pull.number, pull.html_url)
        return ApprovalRequest(id=str(pull.number), url=pull.html_url)

    def state(self, request: ApprovalRequest) -> ApprovalState:
        """Approved once merged or approved by a reviewer with no standing change request."""
        with _github(f"read pull request #{request.id}"):
            pull = self._pull(request)
            if pull.merged:
                return "approved"
            if pull.state == "closed":
                return "rejected"
            standing: dict[str, str] = {}
            for review in pull.reviews():
                if review.state in _STANDING:
                    standing[review.user.login] = review.state
        verdicts = set(standing.values())
        if "CHANGES_REQUESTED" in verdicts:
            return "rejected"
        return "approved" if "APPROVED" in verdicts else "pending"

    def complete(self, request: ApprovalRequest) -> None:
        """Merge the pull request (at the head that was reviewed); a merged one stays as it is."""
        with _github(f"merge pull request #{request.id}"):
            pull = self._pull(request)
            if pull.merged:
                return
            merged = pull.merge(
                commit_title=f"{pull.title} (#{pull.number})",
                sha=pull.head.sha,
                merge_method=self.merge_method,
            )
        if not merged:
            raise ApprovalError(f"merge pull request #{request.id}: GitHub did not merge it")

    def comment(self, request: ApprovalRequest, body: str) -> None:
        with _github(f"comment on pull request #{request.id}"):
            self._pull(request).create_comment(body)

    def _pull(self, request: ApprovalRequest) -> github3.pulls.PullRequest:
        pull = self.client.pull_request(self.owner, self.name, int(request.id))
        if pull is None:
            raise ApprovalError(f"pull request #{request.id} not found in {self.owner}/{self.name}")
        return pull


class _github:
    """Turns github3.py's errors into ApprovalError naming what was being done."""

    def __init__(self, doing: str) -> None:
        self.doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, GitHubError):
            raise ApprovalError(f"{self.doing}: GitHub answered {exc.code}: {exc.msg}") from None
