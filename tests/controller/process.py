"""The controller as a user runs it: the real `canaryflow controller serve` process (console script of
this venv) on a store in a test's directory, started, killed with SIGKILL and restarted on that store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from canaryflow.app.local.process import ManagedProcess
from tests.support.net import free_port

EXE = str(Path(sys.executable).with_name("canaryflow"))
API_TOKEN = "controller-test-api-token-0123"  # reading the API needs an authenticated caller
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def controller_env(
    secret: str, tracking_uri: str, git_remote: Path, tmp: Path, policy: Path
) -> dict[str, str]:
    """The settings a controller under test shares: signed MLflow webhooks, every alias change
    triggering `policy`, the test's git remote, the local runner; tests add their own to it."""
    return {
        "CANARYFLOW_CONTROLLER_MLFLOW_WEBHOOK_SECRET": secret,
        "CANARYFLOW_CONTROLLER_API_TOKEN": API_TOKEN,
        "CANARYFLOW_CONTROLLER_REGISTRY_TRACKING_URI": tracking_uri,
        "CANARYFLOW_CONTROLLER_TRIGGERS": json.dumps({"*": [{"kind": "alias", "policy": str(policy)}]}),
        "CANARYFLOW_GITOPS_REMOTE_URL": str(git_remote),
        "CANARYFLOW_GITOPS_WORKDIR": str(tmp / "gitops-work"),
        "CANARYFLOW_WORKFLOWS_ENGINE": "local",
        "CANARYFLOW_METRICS_BACKEND": "scrape",
    }


class Controller:
    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env, self.port = tmp, env, free_port()
        self.proc: ManagedProcess | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = tmp / "controller.db"

    def start(self, crash_at: str | None = None) -> None:
        env = dict(self.env)
        if crash_at:
            env["CANARYFLOW_TEST_CRASH_AT"] = crash_at
        else:
            env.pop("CANARYFLOW_TEST_CRASH_AT", None)
        port, db = str(self.port), str(self.db)
        argv = [EXE, "controller", "serve", "--port", port, "--db", db, "--interval", "0.2"]
        self.proc = ManagedProcess("controller", argv, self.tmp / "controller.log", env=env, cwd=self.tmp)
        self.proc.wait_until(lambda: _ok(self.url + "/healthz"), 60, "answering /healthz")

    def died_by_sigkill(self, timeout_s: float = 60) -> bool:
        assert self.proc is not None
        try:
            return self.proc.proc.wait(timeout_s) == -9
        except subprocess.TimeoutExpired:
            return False

    def kill(self) -> None:
        """SIGKILL to the whole process group, as the OOM killer or a node loss would end it."""
        assert self.proc is not None
        self.proc.kill()
        assert self.proc.proc.returncode == -9

    def log_tail(self, lines: int = 30) -> str:
        return self.proc.log_tail(lines) if self.proc is not None else ""

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def deliver(url: str, headers: dict[str, str], body: bytes) -> int | None:
    try:
        return httpx.post(url + "/webhooks/mlflow", content=body, headers=headers, timeout=10).status_code
    except httpx.HTTPError:
        return None  # the process died before answering: the sender retries
