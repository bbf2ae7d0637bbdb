"""Slowloris against the real server processes: `canaryflow serve` (the inference server, MiniLM on
CPU) and `canaryflow controller serve`, each with short request-read deadlines and a small per-client
bound set through its settings. Before `inference.connection_guard`, a connection that sent part of
its headers stayed open for good, and enough of them from one client left every other caller a 503."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from canaryflow.adapters.model_assets import minilm_path
from canaryflow.app.local.process import ManagedProcess
from tests.support.net import free_port
from tests.support.slow_clients import check_slow_clients_are_cut_off

CLI = str(Path(sys.executable).with_name("canaryflow"))
HEADER_S, BODY_S, PER_CLIENT = 1.5, 2.0, 16


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.timeout(240)
def test_the_inference_server_cuts_off_slow_clients(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [CLI, "serve", "--model-uri", str(minilm_path()), "--model-name", "minilm", "--port", str(port),
            "--device", "cpu"]  # fmt: skip
    env = {
        "CANARYFLOW_INFERENCE_HEADER_TIMEOUT_S": str(HEADER_S),
        "CANARYFLOW_INFERENCE_BODY_TIMEOUT_S": str(BODY_S),
        "CANARYFLOW_INFERENCE_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
    }
    with ManagedProcess("inference", argv, tmp_path / "inference.log", env=env, cwd=tmp_path) as server:
        server.wait_until(lambda: _healthy(url + "/ready"), 180, "ready")
        check_slow_clients_are_cut_off(url, "/v1/embeddings", HEADER_S, BODY_S, PER_CLIENT, server.alive)
        response = httpx.post(url + "/v1/embeddings", json={"input": "still serving", "model": "minilm"})
        assert response.status_code == 200 and len(response.json()["data"][0]["embedding"]) == 384


def test_the_controller_cuts_off_slow_clients(tmp_path: Path, git_remote: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        CLI,
        "controller",
        "serve",
        "--port",
        str(port),
        "--db",
        str(tmp_path / "c.db"),
        "--interval",
        "30",
    ]
    env = {
        "CANARYFLOW_CONTROLLER_MLFLOW_WEBHOOK_SECRET": "s3cret",
        "CANARYFLOW_CONTROLLER_REGISTRY_TRACKING_URI": "http://127.0.0.1:9",
        "CANARYFLOW_CONTROLLER_HEADER_TIMEOUT_S": str(HEADER_S),
        "CANARYFLOW_CONTROLLER_BODY_TIMEOUT_S": str(BODY_S),
        "CANARYFLOW_CONTROLLER_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
        "CANARYFLOW_GITOPS_REMOTE_URL": str(git_remote),
        "CANARYFLOW_GITOPS_WORKDIR": str(tmp_path / "work"),
        "CANARYFLOW_WORKFLOWS_ENGINE": "local",
    }
    with ManagedProcess("controller", argv, tmp_path / "controller.log", env=env, cwd=tmp_path) as server:
        server.wait_until(lambda: _healthy(url + "/healthz"), 60, "answering /healthz")
        check_slow_clients_are_cut_off(url, "/webhooks/mlflow", HEADER_S, BODY_S, PER_CLIENT, server.alive)
        assert "Traceback" not in server.log_tail(200), server.log_tail(60)
