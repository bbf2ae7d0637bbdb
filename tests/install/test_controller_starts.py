"""The controller container as the built manifests describe it, started as a local process: its
command, args and environment (ConfigMap, plain values, Secret references filled the way Kubernetes
would) come from `kubectl kustomize` output, and its startup probe is polled until it answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from canaryflow.app.install.options import CONTROLLER, STATE_DIR
from tests.install.conftest import one
from tests.support.net import free_port

# What the operator puts in the `canaryflow-secrets` Secret (docs/install.md), and the token Secret.
SECRET_VALUES = {
    "CANARYFLOW_CONTROLLER_MLFLOW_WEBHOOK_SECRET": "whsec-from-the-secret",
    "CANARYFLOW_WORKFLOWS_ARGO_TOKEN": "service-account-token",
}


def container_env(
    docs: list[dict[str, Any]], container: dict[str, Any], state: Path, port: int
) -> dict[str, str]:
    """The environment Kubernetes gives the container, with the pod's paths moved under `state`."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item["name"] in SECRET_VALUES:
            env[item["name"]] = SECRET_VALUES[item["name"]]
        else:
            assert item["valueFrom"]["secretKeyRef"]["optional"] is True, item
    # /tmp first: the test's own folder is under /tmp too.
    moved = {k: v.replace("/tmp", str(state / "tmp")).replace(STATE_DIR, str(state)) for k, v in env.items()}
    moved["CANARYFLOW_CONTROLLER_HOST"] = "127.0.0.1"  # 0.0.0.0 in the pod; here only loopback
    moved["CANARYFLOW_CONTROLLER_PORT"] = str(port)
    return moved


def test_controller_starts_from_the_built_manifest(
    built: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    docs = built["full/gpu"]
    pod = one(docs, "Deployment", CONTROLLER)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    port = free_port()
    (tmp_path / "tmp").mkdir()
    env = container_env(docs, container, tmp_path, port)
    executable = Path(sys.executable).parent / container["command"][0]
    assert executable.exists(), f"the image's command {container['command'][0]!r} is not installed"
    probe = container["startupProbe"]["httpGet"]
    assert probe["port"] == container["ports"][0]["name"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CANARYFLOW_")}
    log = (tmp_path / "controller.log").open("w")
    process = subprocess.Popen(
        [str(executable), *container["args"]], env={**clean, **env}, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}{probe['path']}", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert answer is not None, (tmp_path / "controller.log").read_text()[-2000:]
        assert answer.status_code == 200 and answer.json() == {"status": "ok"}
        assert (tmp_path / "controller.db").exists()  # the state lives on the volume's path
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "canaryflow_controller_rollouts" in metrics
    finally:
        process.terminate()
        process.wait(20)
        log.close()
