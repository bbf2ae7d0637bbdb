"""Fixtures of the GitOps tests: settings pointing at a bare repo, a rollout spec, golden cases."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from canaryflow.kernel.types import RolloutSpec
from gitops.gitops_settings import GitOpsSettings, RenderOptions
from gitops.traffic.cluster import KubernetesObjects
from tests.support.kube_api import KubeApiServer

SHARED_SCHEMAS = Path(__file__).resolve().parents[2].parent / "shared" / "schemas"
GOLDEN = Path(__file__).parent / "golden"

# Fixed render options for golden files: independent of the defaults changing over time.
GOLDEN_OPTIONS = RenderOptions(
    image="ghcr.io/canaryflow/canaryflow:0.1.0",
    repo_url="https://github.com/example/gitops.git",
    target_revision="main",
    tracking_uri="http://mlflow.mlflow.svc:5000",
)


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def empty_remote(tmp_path: Path) -> Path:
    path = tmp_path / "empty.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(path))
    return path


@pytest.fixture
def make_settings(tmp_path: Path):
    def make(remote: Path | str, name: str = "clone", **overrides: object) -> GitOpsSettings:
        values: dict[str, object] = {
            "remote_url": str(remote),
            "workdir": tmp_path / name,
            "push_backoff_s": 0.01,
            "author_name": "canaryflow-test",
            "author_email": "ci@example.com",
        }
        values.update(overrides)
        return GitOpsSettings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def spec() -> RolloutSpec:
    return RolloutSpec(rollout_id="r-42", model="minilm", baseline_version="1", canary_version="2")


def remote_log(remote: Path, *args: str) -> str:
    return git("--git-dir", str(remote), "log", *args, "main")


def remote_file(remote: Path, path: str, ref: str = "main") -> str:
    return git("--git-dir", str(remote), "show", f"{ref}:{path}")


@pytest.fixture
def cluster() -> Iterator[tuple[KubeApiServer, KubernetesObjects]]:
    """A local Kubernetes API stand-in and the routers' reader (the official client) pointed at it."""
    server = KubeApiServer()
    configuration = client.Configuration()
    configuration.host = server.url
    yield server, KubernetesObjects(client.ApiClient(configuration), timeout_s=5)
    server.close()
