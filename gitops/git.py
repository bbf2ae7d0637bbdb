"""`GitRepo`: the GitOps repository behind the `GitOpsRepo` port, driven through the git CLI.

Every write is: fetch the branch, render on top of its head, validate, commit with the audit trailers,
push. A push that loses a race (another rollout pushed first) is redone on top of the new head, with
exponential backoff and a bound; renders are pure, so redoing one is safe and two rollouts of different
models both land. History is never rewritten: a rollback is a new commit restoring the last promoted
state. Calls on one working clone are serialised, across threads and processes (a lock file).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from canaryflow.kernel.contracts.serving_config import ServingConfig
from canaryflow.kernel.types import CommitResult, Decision, RolloutSpec
from gitops import history
from gitops.files import write_rendering
from gitops.gitcli import GIT_TIMEOUT_S, Git, GitAuth, GitError, GitLockHeld, PushRejected
from gitops.gitops_settings import GitOpsSettings, TrafficMode
from gitops.locks import CloneBusy, clear_stale_locks
from gitops.model import Rendering, RenderRequest
from gitops.render import overlay_dir, render
from gitops.validate import ManifestValidator

log = logging.getLogger(__name__)

# Set in every working clone canaryflow creates; a clone without it is someone's repo, left alone.
_CLONE_MARK = "canaryflow.workingclone"

# What to commit, decided on the fetched head: the render and its commit message.
Plan = Callable[[], tuple[Rendering, str]]


def step_request(spec: RolloutSpec, weight: int, decision: str, mode: TrafficMode) -> RenderRequest:
    """The traffic state of a step; a promotion at 100% leaves the canary version alone, stable."""
    if decision == "promote" and weight == 100:
        return RenderRequest(
            model=spec.model,
            environment=spec.environment,
            baseline_version=spec.canary_version,
            traffic_mode=mode,
        )
    return RenderRequest(
        model=spec.model,
        environment=spec.environment,
        baseline_version=spec.baseline_version,
        canary_version=spec.canary_version,
        weight=weight,
        traffic_mode=mode,
    )


def absolute_remote(remote: str) -> str:
    """A local path remote made absolute: git runs inside the working clone, not where we were started."""
    is_url = "://" in remote or re.match(r"^[\w.-]+@[\w.-]+:", remote) is not None
    return remote if is_url else str(Path(remote).expanduser().resolve())


class GitRepo:
    def __init__(
        self,
        settings: GitOpsSettings,
        *,
        traffic_mode_for: Callable[[RolloutSpec], TrafficMode] | None = None,
        validator: ManifestValidator | None = None,
        serving_for: Callable[[RolloutSpec], ServingConfig] | None = None,
        version_source: Callable[[str, str], str] | None = None,
    ) -> None:
        if not settings.remote_url:
            raise ValueError("remote_url: the GitOps remote is not set (CANARYFLOW_GITOPS_REMOTE_URL)")
        self.settings = settings.model_copy(update={"remote_url": absolute_remote(settings.remote_url)})
        self.options = self.settings.render_options()
        self.validator = validator or ManifestValidator(settings.kubernetes_version, settings.schemas_dir)
        self._mode_for = traffic_mode_for or (lambda _spec: settings.traffic_mode)
        self._serving_for = serving_for or (lambda _spec: ServingConfig())
        self._version_source = version_source
        self.workdir = Path(settings.workdir).resolve()
        token = settings.token.get_secret_value() if settings.token else None
        self.auth = GitAuth(token=token, username=settings.token_username, ssh_key_path=settings.ssh_key_path)
        self.git = Git(self.workdir, self.auth, settings.author_name, settings.author_email)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One writer per working clone, across threads and processes (a lock file beside the clone)."""
        lock_path = self.workdir.with_name(f".{self.workdir.name}.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                self._clear_crash_leftovers()
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _clear_crash_leftovers(self) -> None:
        """Under our lock, a git lock file whose owner is gone is a crash leftover: removed."""
        if not (self.workdir / ".git").is_dir():
            return
        try:
            clear_stale_locks(self.workdir, max_age_s=GIT_TIMEOUT_S + 30)
        except CloneBusy as exc:
            raise GitLockHeld(f"working clone busy: {exc}") from exc

    # --- the GitOpsRepo port -------------------------------------------------------------------

    def commit_step(
        self, spec: RolloutSpec, weight: int, decision: Decision | str, reason: str = ""
    ) -> CommitResult:
        step = self._step(spec, weight, decision, reason)
        return self._land(lambda: step, self.settings.branch)

    def rollback(self, spec: RolloutSpec, reason: str) -> CommitResult:
        def plan() -> tuple[Rendering, str]:
            # This rollout's own promotion does not count: a rollback after it (the watch after
            # promotion found a regression) restores the version before it.
            log = [
                e
                for e in self._log(spec.model, spec.environment)
                if e.trailers.get("Rollout-Id") != spec.rollout_id
            ]
            version = history.last_promoted_version(log)
            restored = version or spec.baseline_version
            request = RenderRequest(
                model=spec.model,
                environment=spec.environment,
                baseline_version=restored,
                traffic_mode=self._mode_for(spec),
                rollback_of=spec.canary_version if spec.canary_version != restored else None,
            )
            request = self.served(spec, request)
            subject = (
                f"{spec.model}/{spec.environment}: roll back v{spec.canary_version}, restore v{restored}"
            )
            return self.render_checked(request), history.commit_message(
                subject, spec, restored, 0, "rollback", reason=self.auth.scrub(reason)
            )

        return self._land(plan, self.settings.branch)

    # --- more than the port: pull-request branches, audit log, dry runs -------------------------

    def push_branch(self, spec: RolloutSpec, weight: int, decision: str, branch: str) -> CommitResult:
        """Commit a step on top of the main branch's head and push it to `branch` (for a pull request).

        The branch belongs to one rollout; it is overwritten on each request, the main branch never is.
        """
        step = self._step(spec, weight, decision)
        return self._land(lambda: step, branch, force=True)

    def audit_log(self, model: str, environment: str) -> list[history.AuditEntry]:
        with self._exclusive():
            self._sync()
            return self._log(model, environment)

    def diff(self, request: RenderRequest) -> str:
        """What committing `request` would change, as a git diff against the remote head."""
        rendering = self.render_checked(request)
        with self._exclusive():
            self._sync()
            write_rendering(self.workdir, rendering)
            try:
                self.git.run("add", "-A", "--", *rendering.owned)
                return self.git.run("diff", "--cached", "--no-color", "--", *rendering.owned).stdout
            finally:
                self._sync(fetch=False)

    # --- internals ------------------------------------------------------------------------------

    def served(self, spec: RolloutSpec, request: RenderRequest) -> RenderRequest:
        """`request` with the server the rollout's policy names and, for a server that downloads its
        artifacts, each version's artifact source resolved in the registry now (render time)."""
        serving = self._serving_for(spec)
        if serving.profile == "canaryflow":
            return request
        sources: dict[str, str] = {}
        if self._version_source is not None:
            registered = self.options.registered_models.get(spec.model, spec.model)
            versions = [v for v in (request.baseline_version, request.canary_version) if v]
            sources = {v: self._version_source(registered, v) for v in versions}
        return request.model_copy(update={"serving": serving, "sources": sources})

    def render_checked(self, request: RenderRequest) -> Rendering:
        """The render and validation a commit applies, without committing (the render step runs it)."""
        rendering = render(request, self.options)
        self.validator.validate_rendering(rendering)
        return rendering

    def _step(self, spec: RolloutSpec, weight: int, decision: str, reason: str = "") -> tuple[Rendering, str]:
        """The validated render of a step and its commit message (refused before any git work)."""
        request = self.served(spec, step_request(spec, weight, decision, self._mode_for(spec)))
        where = f"{spec.model}/{spec.environment}"
        if request.is_stable:
            subject = f"{where}: promote v{spec.canary_version} (was v{spec.baseline_version})"
            weight = 100
        else:
            subject = (
                f"{where}: canary v{spec.canary_version} at {weight}% (baseline v{spec.baseline_version})"
            )
        message = history.commit_message(subject, spec, spec.canary_version, weight, decision, reason=reason)
        return self.render_checked(request), message

    def _land(self, plan: Plan, branch: str, force: bool = False) -> CommitResult:
        attempts = self.settings.push_attempts
        with self._exclusive():
            self._ensure_clone()
            for attempt in range(1, attempts + 1):
                self._sync()
                rendering, message = plan()
                write_rendering(self.workdir, rendering)
                self.git.run("add", "-A", "--", *rendering.owned)
                if self.git.run("diff", "--cached", "--quiet", check=False).returncode == 0:
                    return CommitResult(sha=None, changed=False, message=message)
                self.git.run("commit", "--quiet", "-F", "-", stdin=message)
                sha = self.git.out("rev-parse", "HEAD")
                try:
                    self._push(branch, force)
                except PushRejected as exc:
                    if attempt == attempts:
                        raise GitError(
                            f"push to {branch}: remote kept moving, gave up after {attempts} attempts"
                        ) from exc
                    delay = self.settings.push_backoff_s * 2 ** (attempt - 1) * (1 + random.random())
                    log.info(
                        "push to %s lost a race (attempt %d/%d), retrying in %.2fs",
                        branch,
                        attempt,
                        attempts,
                        delay,
                    )
                    time.sleep(delay)
                    continue
                log.info("pushed %s to %s: %s", sha[:12], branch, message.splitlines()[0])
                return CommitResult(sha=sha, changed=True, message=message)
        raise AssertionError("unreachable")  # pragma: no cover

    def _push(self, branch: str, force: bool) -> None:
        self.git.run("push", *(["--force"] if force else []), "origin", f"HEAD:refs/heads/{branch}")

    def _ensure_clone(self) -> None:
        """Create the working clone, or check that `workdir` is one: syncing it discards local files."""
        if (self.workdir / ".git").is_dir():
            if self.git.run("config", "--get", _CLONE_MARK, check=False).stdout.strip() != "true":
                raise GitError(f"workdir: {self.workdir} is a git repository not created by canaryflow")
            remote = self.git.run("remote", "get-url", "origin", check=False).stdout.strip()
            if remote != self.settings.remote_url:
                self.git.run("remote", "set-url", "origin", self.settings.remote_url)
            return
        if self.workdir.exists() and any(self.workdir.iterdir()):
            raise GitError(f"workdir: {self.workdir} is not empty and not a canaryflow working clone")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.git.run("init", "--quiet", "--initial-branch", self.settings.branch)
        self.git.run("config", _CLONE_MARK, "true")
        self.git.run("remote", "add", "origin", self.settings.remote_url)

    def _sync(self, fetch: bool = True) -> None:
        """Make the working clone exactly the remote branch's head (or empty, for a new remote)."""
        self._ensure_clone()
        branch = self.settings.branch
        tracking = f"refs/remotes/origin/{branch}"
        if fetch:
            remote_heads = self.git.out("ls-remote", "--heads", "origin", f"refs/heads/{branch}")
            if remote_heads:
                self.git.run("fetch", "--quiet", "origin", f"+refs/heads/{branch}:{tracking}")
            else:
                self.git.run("update-ref", "-d", tracking, check=False)
        if self.git.run("rev-parse", "--verify", "--quiet", tracking, check=False).returncode == 0:
            self.git.run("checkout", "--quiet", "--force", "-B", branch, tracking)
        else:
            self.git.run("symbolic-ref", "HEAD", f"refs/heads/{branch}")
            self.git.run("update-ref", "-d", f"refs/heads/{branch}", check=False)
            self.git.run("read-tree", "--empty")
        self.git.run("clean", "--quiet", "-fdx")

    def _log(self, model: str, environment: str) -> list[history.AuditEntry]:
        tracking = f"refs/remotes/origin/{self.settings.branch}"
        if self.git.run("rev-parse", "--verify", "--quiet", tracking, check=False).returncode != 0:
            return []
        output = self.git.run(
            "log", f"--format={history.LOG_FORMAT}", tracking, "--", overlay_dir(model, environment)
        ).stdout
        return history.parse_log(output)
