"""A local HTTP server speaking the GitHub REST API paths and payloads github3.py uses for pulls.

Payloads have the fields GitHub documents and github3.py reads (it raises IncompleteResponse on a
missing key); every request is recorded (method, path, query, JSON body, Authorization) so tests can
assert exactly what the client sent. Served under `/api/v3`, as a GitHub Enterprise host is.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

STAMP = "2026-11-23T12:00:00Z"


def iso(at: float | None = None) -> str:
    """GitHub's timestamp format (UTC, seconds, `Z`)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if at is None else at))


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    authorization: str


@dataclass
class GitHubDouble:
    owner: str
    repo: str
    base: str = ""
    requests: list[Recorded] = field(default_factory=list)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    reviews: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    # login -> repository role (admin, maintain, write, triage, read); absent: not a collaborator
    roles: dict[str, str] = field(default_factory=dict)
    mergeable: bool = True

    @property
    def api(self) -> str:
        return f"{self.base}/api/v3"

    # --- payloads, shaped like GitHub's ---------------------------------------------------------

    def user(self, login: str, user_id: int = 1) -> dict[str, Any]:
        u = f"{self.api}/users/{login}"
        return {
            "login": login,
            "id": user_id,
            "node_id": f"U_{user_id}",
            "avatar_url": f"{self.base}/avatars/{login}",
            "gravatar_id": "",
            "url": u,
            "html_url": f"{self.base}/{login}",
            "followers_url": f"{u}/followers",
            "following_url": f"{u}/following{{/other_user}}",
            "gists_url": f"{u}/gists{{/gist_id}}",
            "starred_url": f"{u}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{u}/subscriptions",
            "organizations_url": f"{u}/orgs",
            "repos_url": f"{u}/repos",
            "events_url": f"{u}/events{{/privacy}}",
            "received_events_url": f"{u}/received_events",
            "type": "User",
            "site_admin": False,
        }

    def repository(self) -> dict[str, Any]:
        r = f"{self.api}/repos/{self.owner}/{self.repo}"
        templated = {
            "archive_url": "{archive_format}{/ref}",
            "assignees_url": "/assignees{/user}",
            "blobs_url": "/git/blobs{/sha}",
            "branches_url": "/branches{/branch}",
            "collaborators_url": "/collaborators{/collaborator}",
            "comments_url": "/comments{/number}",
            "commits_url": "/commits{/sha}",
            "compare_url": "/compare/{base}...{head}",
            "contents_url": "/contents/{+path}",
            "git_commits_url": "/git/commits{/sha}",
            "git_refs_url": "/git/refs{/sha}",
            "git_tags_url": "/git/tags{/sha}",
            "issue_comment_url": "/issues/comments{/number}",
            "issue_events_url": "/issues/events{/number}",
            "issues_url": "/issues{/number}",
            "keys_url": "/keys{/key_id}",
            "labels_url": "/labels{/name}",
            "milestones_url": "/milestones{/number}",
            "notifications_url": "/notifications{?since,all,participating}",
            "pulls_url": "/pulls{/number}",
            "releases_url": "/releases{/id}",
            "statuses_url": "/statuses/{sha}",
            "trees_url": "/git/trees{/sha}",
        }
        plain = [
            "contributors",
            "deployments",
            "downloads",
            "events",
            "forks",
            "hooks",
            "languages",
            "merges",
            "stargazers",
            "subscribers",
            "subscription",
            "tags",
            "teams",
        ]
        payload: dict[str, Any] = {
            "id": 4242,
            "node_id": "R_4242",
            "name": self.repo,
            "full_name": f"{self.owner}/{self.repo}",
            "owner": self.user(self.owner, 7),
            "private": True,
            "html_url": f"{self.base}/{self.owner}/{self.repo}",
            "description": "GitOps repository",
            "fork": False,
            "url": r,
            "homepage": None,
            "language": None,
            "forks_count": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "size": 12,
            "default_branch": "main",
            "open_issues_count": 0,
            "has_issues": True,
            "has_projects": False,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": True,
            "archived": False,
            "disabled": False,
            "pushed_at": STAMP,
            "created_at": STAMP,
            "updated_at": STAMP,
            "network_count": 0,
            "subscribers_count": 1,
            "mirror_url": None,
            "clone_url": f"{self.base}/{self.owner}/{self.repo}.git",
            "git_url": f"git://example/{self.owner}/{self.repo}.git",
            "ssh_url": f"git@example:{self.owner}/{self.repo}.git",
            "svn_url": f"{self.base}/{self.owner}/{self.repo}",
            "allow_merge_commit": True,
            "allow_squash_merge": True,
            "allow_rebase_merge": True,
            "license": None,
            "permissions": {"admin": False, "push": True, "pull": True},
        }
        payload.update({key: r + suffix for key, suffix in templated.items()})
        payload.update({f"{name}_url": f"{r}/{name}" for name in plain})
        return payload

    def _pull(self, number: int, title: str, body: str, head: str, base: str) -> dict[str, Any]:
        r = f"{self.api}/repos/{self.owner}/{self.repo}"
        html = f"{self.base}/{self.owner}/{self.repo}/pull/{number}"
        repo, bot = self.repository(), self.user("canaryflow-bot", 9)
        return {
            "url": f"{r}/pulls/{number}",
            "id": 9000 + number,
            "node_id": f"PR_{number}",
            "number": number,
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": f"{r}/issues/{number}",
            "commits_url": f"{r}/pulls/{number}/commits",
            "review_comments_url": f"{r}/pulls/{number}/comments",
            "review_comment_url": f"{r}/pulls/comments{{/number}}",
            "comments_url": f"{r}/issues/{number}/comments",
            "statuses_url": f"{r}/statuses/{'a' * 40}",
            "state": "open",
            "locked": False,
            "active_lock_reason": None,
            "title": title,
            "user": bot,
            "body": body,
            "body_html": f"<p>{body}</p>",
            "body_text": body,
            "labels": [],
            "milestone": None,
            "created_at": iso(),
            "updated_at": iso(),
            "closed_at": None,
            "merged_at": None,
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "draft": False,
            "author_association": "MEMBER",
            "head": {
                "label": f"{self.owner}:{head}",
                "ref": head,
                "sha": "a" * 40,
                "user": repo["owner"],
                "repo": repo,
            },
            "base": {
                "label": f"{self.owner}:{base}",
                "ref": base,
                "sha": "b" * 40,
                "user": repo["owner"],
                "repo": repo,
            },
            "_links": {
                "self": {"href": f"{r}/pulls/{number}"},
                "html": {"href": html},
                "issue": {"href": f"{r}/issues/{number}"},
                "comments": {"href": f"{r}/issues/{number}/comments"},
                "review_comments": {"href": f"{r}/pulls/{number}/comments"},
                "commits": {"href": f"{r}/pulls/{number}/commits"},
                "statuses": {"href": f"{r}/statuses/{'a' * 40}"},
            },
            "merged": False,
            "mergeable": True,
            "rebaseable": True,
            "mergeable_state": "clean",
            "merged_by": None,
            "comments": 0,
            "review_comments": 0,
            "maintainer_can_modify": False,
            "commits": 1,
            "additions": 10,
            "deletions": 4,
            "changed_files": 3,
        }

    def push(self, number: int, sha: str) -> None:
        """A new commit on the pull request's branch: its head moves."""
        self.pulls[number]["head"]["sha"] = sha

    def permission(self, login: str) -> tuple[int, dict[str, Any]]:
        """GET /repos/{owner}/{repo}/collaborators/{user}/permission, as GitHub answers it: `permission`
        is the legacy level (maintain reads "write", triage "read"), `role_name` the role itself."""
        role = self.roles.get(login)
        if role is None:
            return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
        legacy = {"maintain": "write", "triage": "read"}.get(role, role)
        user = {**self.user(login, 50), "permissions": {"admin": role == "admin", "push": legacy != "read"}}
        return 200, {"permission": legacy, "role_name": role, "user": user}

    def add_review(
        self,
        number: int,
        login: str,
        state: str,
        *,
        commit_id: str | None = None,
        submitted_at: str | None = None,
    ) -> None:
        reviews = self.reviews.setdefault(number, [])
        review_id = 100 + len(reviews)
        html = f"{self.base}/{self.owner}/{self.repo}/pull/{number}#pullrequestreview-{review_id}"
        reviews.append(
            {
                "id": review_id,
                "node_id": f"PRR_{review_id}",
                "user": self.user(login, 50 + len(reviews)),
                "body": "",
                "body_html": "",
                "body_text": "",
                "state": state,
                "html_url": html,
                "pull_request_url": f"{self.api}/repos/{self.owner}/{self.repo}/pulls/{number}",
                "author_association": "MEMBER",
                "submitted_at": submitted_at or iso(),
                "commit_id": commit_id or self.pulls[number]["head"]["sha"],
                "_links": {
                    "html": {"href": html},
                    "pull_request": {"href": f"{self.api}/repos/{self.owner}/{self.repo}/pulls/{number}"},
                },
            }
        )

    # --- routing ----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        prefix = f"/api/v3/repos/{self.owner}/{self.repo}"
        if not path.startswith(prefix):
            return 404, {"message": "Not Found"}
        rest = path[len(prefix) :].strip("/").split("/") if path != prefix else []
        match method, rest:
            case "GET", []:
                return 200, self.repository()
            case "GET", ["pulls"]:
                query = self.requests[-1].query
                head = query.get("head", [""])[0]
                state = query.get("state", ["open"])[0]
                found = [p for p in self.pulls.values() if p["head"]["label"] == head and p["state"] == state]
                return 200, found
            case "POST", ["pulls"]:
                if any(
                    p["head"]["ref"] == body["head"] and p["state"] == "open" for p in self.pulls.values()
                ):
                    return 422, {
                        "message": "Validation Failed",
                        "errors": [{"message": "A pull request already exists"}],
                    }
                number = len(self.pulls) + 1
                self.pulls[number] = self._pull(
                    number, body["title"], body.get("body") or "", body["head"], body["base"]
                )
                return 201, self.pulls[number]
            case "GET", ["collaborators", login, "permission"]:
                return self.permission(login)
            case "GET", ["pulls", number] if int(number) in self.pulls:
                return 200, self.pulls[int(number)]
            case "GET", ["pulls", number, "reviews"] if int(number) in self.pulls:
                return 200, self.reviews.get(int(number), [])
            case "PUT", ["pulls", number, "merge"] if int(number) in self.pulls:
                pull = self.pulls[int(number)]
                if not self.mergeable or pull["state"] != "open":
                    return 405, {"message": "Pull Request is not mergeable"}
                if body.get("sha") not in (None, pull["head"]["sha"]):
                    return 409, {"message": "Head branch was modified. Review and try the merge again."}
                pull.update(state="closed", merged=True, merged_at=STAMP, merge_commit_sha="c" * 40)
                return 200, {"sha": "c" * 40, "merged": True, "message": "Pull Request successfully merged"}
            case "POST", ["issues", number, "comments"] if int(number) in self.pulls:
                comments = self.comments.setdefault(int(number), [])
                comment_id = 500 + len(comments)
                r = f"{self.api}/repos/{self.owner}/{self.repo}"
                comments.append(
                    {
                        "id": comment_id,
                        "node_id": f"IC_{comment_id}",
                        "url": f"{r}/issues/comments/{comment_id}",
                        "html_url": f"{self.base}/{self.owner}/{self.repo}/pull/{number}"
                        f"#issuecomment-{comment_id}",
                        "issue_url": f"{r}/issues/{number}",
                        "body": body["body"],
                        "body_html": "",
                        "body_text": body["body"],
                        "user": self.user("canaryflow-bot", 9),
                        "created_at": STAMP,
                        "updated_at": STAMP,
                        "author_association": "MEMBER",
                    }
                )
                return 201, comments[-1]
        return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}


class _Handler(BaseHTTPRequestHandler):
    double: GitHubDouble

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        self.double.requests.append(
            Recorded(self.command, url.path, parse_qs(url.query), body, self.headers.get("Authorization", ""))
        )
        status, payload = self.double.handle(self.command, url.path, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = _serve

    def log_message(self, *args: object) -> None:
        pass


class GitHubServer:
    def __init__(self, owner: str = "acme", repo: str = "gitops") -> None:
        handler: type[_Handler] = type("Handler", (_Handler,), {})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.double = GitHubDouble(owner, repo, base=self.url)
        handler.double = self.double
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> GitHubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
