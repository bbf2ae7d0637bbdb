"""`GitHubApproval`: the promotion gate as a GitHub pull request, behind the `ApprovalGate` port.

`request` pushes the promotion commit to a branch of its own (`canaryflow/<rollout-id>`) and opens a
pull request onto the GitOps branch whose body is the analysis report; reviewers approve or request
changes; `complete` merges it, which is the promotion landing in git. Works with github.com and
GitHub Enterprise (github3.py builds the API URL from the base URL).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

import github3
from github3.exceptions import GitHubError, GitHubException

from canaryflow.kernel.types import ApprovalRequest, ApprovalState, RolloutSpec

log = logging.getLogger(__name__)

BranchPusher = Callable[[RolloutSpec, str], object]
# The review states that stand until the same reviewer submits another one.
_STANDING = {"APPROVED", "CHANGES_REQUESTED", "DISMISSED"}
# `permission` of GET /repos/{owner}/{repo}/collaborators/{user}/permission that may decide (GitHub
# reports the `maintain` role as "write"); "read", "triage" and "none" may comment but never decide.
_DECIDERS = {"admin", "write"}


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
        permission_ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        owner, sep, name = repository.partition("/")
        if not (owner and sep and name) or "/" in name:
            raise ValueError(f"github_repo: {repository!r} is not owner/name")
        self.client, self.owner, self.name = client, owner, name
        self.base_branch = base_branch
        self.push_branch = push_branch
        self.merge_method = merge_method
        self.permission_ttl_s, self._clock = permission_ttl_s, clock
        self._permissions: dict[str, tuple[float, bool]] = {}
        self._permissions_lock = threading.Lock()

    @property
    def repository(self) -> str:
        return f"{self.owner}/{self.name}"

    def can_approve(self, login: str) -> bool:
        """Whether `login` holds write access to the repository (cached `permission_ttl_s`): only such a
        reviewer's decision counts. A user GitHub does not know (404) never may."""
        now = self._clock()
        with self._permissions_lock:
            cached = self._permissions.get(login.lower())
        if cached is not None and now - cached[0] < self.permission_ttl_s:
            return cached[1]
        with _github(f"read the permission of {login!r}"):
            repo = self.client.repository(self.owner, self.name)
            url = repo._build_url("collaborators", login, "permission", base_url=repo._api)
            response = repo._get(url)
            if response is not None and response.status_code == 404:
                allowed = False
            else:
                doc = repo._json(response, 200) or {}
                allowed = doc.get("permission") in _DECIDERS if isinstance(doc, dict) else False
        with self._permissions_lock:
            self._permissions[login.lower()] = (now, allowed)
        return allowed

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
        return ApprovalRequest(
            id=str(pull.number),
            url=pull.html_url,
            head_sha=pull.head.sha,
            opened_at=_epoch(pull.created_at),
        )

    def state(self, request: ApprovalRequest) -> ApprovalState:
        """Approved once merged at the requested head, or approved on that head by a reviewer with write
        access and no standing change request; reviews of another commit or from before count nothing."""
        with _github(f"read pull request #{request.id}"):
            pull = self._pull(request)
            if pull.merged:
                return "approved" if not request.head_sha or pull.head.sha == request.head_sha else "rejected"
            if pull.state == "closed":
                return "rejected"
            standing: dict[str, str] = {}
            for review in pull.reviews():
                if review.state not in _STANDING:
                    continue
                if request.head_sha and review.commit_id != request.head_sha:
                    continue
                submitted = _epoch(review.submitted_at)
                if request.opened_at is not None and (submitted is None or submitted < request.opened_at):
                    continue
                standing[review.user.login] = review.state
        verdicts = {state for login, state in standing.items() if self.can_approve(login)}
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
                sha=request.head_sha or pull.head.sha,
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
        if isinstance(exc, GitHubException):  # connection refused, timeout (github3 sets 4 s / 10 s)
            raise ApprovalError(f"{self.doing}: GitHub unreachable ({type(exc).__name__})") from None


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None
