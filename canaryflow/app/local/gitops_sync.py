"""The one-machine stand-in for Argo CD: follows the GitOps remote and applies the routing state.

On a cluster Argo CD syncs the overlay and the inference pods see the routing ConfigMap change (or the
mesh sees the HTTPRoute's weights); here a thread fetches the remote, reads the routing state from the
checkout, whichever router rendered it, and hands it to an applier: `RoutingFileWriter` writes it
atomically to the routing file canaryflow's own server watches, `canaryflow.app.local.mesh.LocalMesh`
runs each version's third-party server and sets the proxy's weights. It never writes to git.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import yaml

from canaryflow.kernel.contracts.routing import RoutingConfig
from gitops.files import routing_from_checkout

log = logging.getLogger(__name__)

Applier = Callable[[RoutingConfig], None]


class RoutingFileWriter:
    """Applies a routing state the way a pod sees its mounted ConfigMap: the file replaced whole."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, routing: RoutingConfig) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(routing.model_dump(mode="json"), sort_keys=False))
        tmp.replace(self.path)


class GitOpsSync:
    def __init__(
        self,
        remote: str,
        checkout: Path,
        model: str,
        environment: str,
        apply: Applier,
        branch: str = "main",
        interval_s: float = 1.0,
    ) -> None:
        self.remote = remote
        self.checkout = checkout
        self.model = model
        self.environment = environment
        self.apply = apply
        self.branch = branch
        self.interval_s = interval_s
        self.applied_sha: str | None = None
        self.applied: RoutingConfig | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _git(self, *args: str) -> str:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        done = subprocess.run(
            ["git", *args], cwd=self.checkout, capture_output=True, text=True, check=True, env=env
        )
        return done.stdout.strip()

    def sync_once(self) -> bool:
        """Fetch and apply; True when the routing state changed."""
        if not (self.checkout / ".git").exists():
            self.checkout.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["git", "clone", "--quiet", "--branch", self.branch, self.remote, str(self.checkout)],
                check=True,
                capture_output=True,
            )
        self._git("fetch", "--quiet", "origin", self.branch)
        sha = self._git("rev-parse", f"origin/{self.branch}")
        if sha == self.applied_sha:
            return False
        # The checkout is this syncer's own: it only ever mirrors the remote.
        self._git("reset", "--quiet", "--hard", f"origin/{self.branch}")
        routing = routing_from_checkout(self.checkout, self.model, self.environment)
        changed = routing != self.applied
        if changed:
            # Marked applied only once the applier succeeded: a failed apply is tried again next time.
            self.apply(routing)
            self.applied = routing
        self.applied_sha = sha
        if not changed:
            return False
        log.info("synced %s: %s", sha[:10], {v.version: v.weight for v in routing.versions})
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync_once()
            except (subprocess.CalledProcessError, OSError, ValueError, RuntimeError) as exc:
                # OSError covers a missing overlay file; RuntimeError an applier whose server failed.
                log.warning("gitops sync failed, retrying: %s", exc)

    def start(self) -> GitOpsSync:
        self.sync_once()
        self._thread = threading.Thread(target=self._loop, name="gitops-sync", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
