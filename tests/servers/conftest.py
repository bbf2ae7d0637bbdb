"""Fixtures for third-party servers run in their own environments, as their images would hold them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from canaryflow.app.local.haproxy import INSTALL_HINT as HAPROXY_HINT
from canaryflow.app.local.haproxy import haproxy_binary
from canaryflow.app.local.mlserver import INSTALL_HINT as MLSERVER_HINT

REPO = Path(__file__).resolve().parents[2]


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI")
    pytest.skip(what)


@pytest.fixture(scope="session")
def mlserver_env() -> Path:
    env = REPO / ".venv-mlserver"
    if not (env / "bin" / "mlserver").exists():
        _missing(f"MLServer's environment {env} is missing; {MLSERVER_HINT}")
    return env


@pytest.fixture(scope="session")
def haproxy() -> str:
    binary = haproxy_binary()
    if binary is None:
        _missing(f"haproxy is not installed; {HAPROXY_HINT}")
    assert binary is not None
    return binary
