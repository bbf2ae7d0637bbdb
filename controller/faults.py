"""Fault injection for the crash-and-restart tests: the process dies (SIGKILL) at a named point.

`CANARYFLOW_TEST_CRASH_AT=after_submit` (comma-separated names) makes the first pass through that point
kill the process exactly as `kill -9` would, with nothing flushed or cleaned up; `after_push@2` waits for
the second pass (the second commit). Unset, it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from canaryflow.kernel.ports import GitOpsRepo
from canaryflow.kernel.types import CommitResult, Decision, RolloutSpec

ENV = "CANARYFLOW_TEST_CRASH_AT"


_passes: dict[str, int] = {}


def crash_point(name: str, before_kill: Callable[[], None] | None = None) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    _passes[name] = _passes.get(name, 0) + 1
    for target in wanted.split(","):
        point, _, nth = target.partition("@")
        if point == name and _passes[name] == int(nth or 1):
            if before_kill is not None:
                before_kill()
            os.kill(os.getpid(), signal.SIGKILL)


class CrashAfterPush:
    """Wraps the GitOps repo so `after_push` can kill the process between a pushed commit and the
    workflow store recording it: the window where a careless restart would commit the step twice."""

    def __init__(self, repo: GitOpsRepo, workdir: Path) -> None:
        self._repo, self._workdir = repo, workdir

    def commit_step(
        self, spec: RolloutSpec, weight: int, decision: Decision | str, reason: str = ""
    ) -> CommitResult:
        result = self._repo.commit_step(spec, weight, decision, reason)
        if result.changed:
            self._crash_points()
        return result

    def rollback(self, spec: RolloutSpec, reason: str) -> CommitResult:
        result = self._repo.rollback(spec, reason)
        if result.changed:
            self._crash_points()
        return result

    def _crash_points(self) -> None:
        crash_point("after_push")
        # As a git killed with its parent mid-operation leaves it: the clone's index lock in place.
        crash_point("after_push_locked", before_kill=self._leave_index_lock)

    def _leave_index_lock(self) -> None:
        if (self._workdir / ".git").is_dir():
            (self._workdir / ".git" / "index.lock").write_bytes(b"")


def armed() -> bool:
    return bool(os.environ.get(ENV))
