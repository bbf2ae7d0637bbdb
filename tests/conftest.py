"""Fixtures that start real servers on 127.0.0.1 (free ports) and stop them after.

- `mlflow_server`: a real `mlflow server`, SQLite backend, local artifacts (session-scoped).
- `prometheus_server`: a factory starting the real Prometheus (Debian package) with a generated
  scrape config for the given targets; tests needing it are skipped, saying how to install it,
  when the binary is absent (CI installs it through `make test`).
- `git_remote`: a fresh bare repository with an initial commit on `main`.
- `postgres_url`: a fresh database on a real PostgreSQL server (Debian package, started once per
  session with initdb in a temporary directory); skipped, saying how to install it, when the binaries
  are absent (a failure in CI).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from canaryflow.app.local.gitremote import init_bare_remote
from canaryflow.app.local.mlflow_server import MlflowServer, start_mlflow
from canaryflow.app.local.postgres import (
    INSTALL_HINT as POSTGRES_INSTALL_HINT,
)
from canaryflow.app.local.postgres import (
    PostgresServer,
    postgres_bindir,
    start_postgres,
)
from canaryflow.app.local.prometheus import (
    INSTALL_HINT,
    PrometheusServer,
    prometheus_binary,
    start_prometheus,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GIT_TERMINAL_PROMPT", "0")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = start_mlflow(tmp_path_factory.mktemp("mlflow"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prometheus_binary_path() -> str:
    binary = prometheus_binary()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"prometheus is required in CI; {INSTALL_HINT}")
        pytest.skip(f"prometheus not installed; {INSTALL_HINT}")
    return binary


@pytest.fixture
def prometheus_server(
    prometheus_binary_path: str, tmp_path: Path
) -> Iterator[Callable[[Sequence[str]], PrometheusServer]]:
    started: list[PrometheusServer] = []

    def start(targets: Sequence[str], interval_s: float = 0.5) -> PrometheusServer:
        server = start_prometheus(tmp_path / f"prometheus-{len(started)}", targets, interval_s=interval_s)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def git_remote(tmp_path: Path) -> Path:
    return init_bare_remote(tmp_path / "gitops.git")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if postgres_bindir() is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI; {POSTGRES_INSTALL_HINT}")
        pytest.skip(f"PostgreSQL not installed; {POSTGRES_INSTALL_HINT}")
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A database of its own for the test, on the session's server."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_server.url.rsplit("/", 1)[0] + f"/{name}"
