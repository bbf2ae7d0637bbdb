"""The `custom` profile's rendered pod runs: built by real Kustomize, its download init container's
command (MLflow's own `mlflow artifacts download`, as rendered) fetches the version's artifacts from a
real MLflow server by the source the registry records, then the user's server command starts on them
and its readiness probe answers with a file that only the download could have put there.

The kubelet's part is translated as canaryflow/app/local/kubelet.py does: the emptyDir at /mnt/models is a
temp folder, the image's `python3` and `mlflow` are this environment's, and 0.0.0.0 is loopback.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import mlflow
from mlflow import MlflowClient

from canaryflow.adapters.registry.mlflow import MlflowRegistry
from canaryflow.app.local.kubelet import kustomize_build
from canaryflow.kernel.contracts.serving_config import ServingConfig
from gitops.files import write_rendering
from gitops.model import RenderRequest
from gitops.profiles import MODEL_MOUNT
from gitops.render import overlay_dir, render
from tests.gitops.conftest import GOLDEN_OPTIONS
from tests.support.net import free_port

REGISTERED = "custom-profile-model"


def _register(tracking_uri: str, marker: str) -> str:
    """A registered version whose artifacts are a folder holding `marker` (as a real model folder)."""
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    with mlflow.start_run() as run:
        mlflow.log_text(marker, "model/weights.txt")
    if not client.search_registered_models(f"name = '{REGISTERED}'"):
        client.create_registered_model(REGISTERED)
    version = client.create_model_version(
        REGISTERED, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    return str(version.version)


def _local(arg: str, mount: Path) -> str:
    return arg.replace(MODEL_MOUNT, str(mount)).replace("0.0.0.0", "127.0.0.1")


def test_the_custom_servers_rendered_pod_downloads_its_version_and_gets_ready(
    mlflow_server: Any, tmp_path: Path
) -> None:
    version = _register(mlflow_server.tracking_uri, "weights of the registered version")
    port = free_port()
    serving = ServingConfig.model_validate(
        {
            "profile": "custom",
            "custom": {
                "image": "python:3.11-slim",
                "command": ["python3", "-m", "http.server", "${port}"],
                "args": ["--bind", "0.0.0.0", "--directory", "${model_dir}"],
                "env": {"SERVED_VERSION": "${model_version}"},
                "port": port,
                "readiness_path": "/weights.txt",
                "liveness_path": "/",
            },
        }
    )
    source = MlflowRegistry(mlflow_server.tracking_uri).version_source(REGISTERED, version)
    request = RenderRequest(
        model="embedder",
        environment="production",
        baseline_version=version,
        traffic_mode="httproute",
        serving=serving,
        sources={version: source},
    )
    options = GOLDEN_OPTIONS.model_copy(update={"tracking_uri": mlflow_server.tracking_uri})
    write_rendering(tmp_path / "repo", render(request, options))
    (deployment,) = [
        o
        for o in kustomize_build(tmp_path / "repo" / overlay_dir("embedder", "production"))
        if o["kind"] == "Deployment"
    ]
    pod = deployment["spec"]["template"]["spec"]
    mount = tmp_path / "emptydir"
    mount.mkdir()
    (init,) = pod["initContainers"]
    env = {e["name"]: e["value"] for e in init["env"]}
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    argv = [mlflow_cli, *init["command"][1:], *(_local(a, mount) for a in init["args"])]
    done = subprocess.run(
        argv, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]

    (container,) = pod["containers"]
    command = [sys.executable, *container["command"][1:]]
    argv = [*command, *(_local(a, mount) for a in container["args"])]
    served_env = {e["name"]: e["value"] for e in container["env"]}
    assert served_env == {"SERVED_VERSION": version}
    probe = container["readinessProbe"]["httpGet"]
    assert probe["port"] == "http" and container["ports"][0]["containerPort"] == port
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}{probe['path']}", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the custom server never answered its readiness probe"
                time.sleep(0.2)
        assert reply.status_code == 200
        assert reply.text == "weights of the registered version"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_logged_models_source_resolves_to_its_artifact_location(mlflow_server: Any, tmp_path: Path) -> None:
    """MLflow 3 registers a logged model by `models:/m-<id>`; the render pins where its files are, which
    the rendered download command then fetches."""
    uri = mlflow_server.tracking_uri
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    model = mlflow.initialize_logged_model(name="logged")
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "weights.txt").write_text("logged weights")
    client.log_model_artifacts(model.model_id, str(folder))
    mlflow.finalize_logged_model(model.model_id, "READY")
    if not client.search_registered_models(f"name = '{REGISTERED}'"):
        client.create_registered_model(REGISTERED)
    version = client.create_model_version(
        REGISTERED, source=f"models:/{model.model_id}", model_id=model.model_id
    )
    source = MlflowRegistry(uri).version_source(REGISTERED, str(version.version))
    assert not source.startswith("models:/") and model.model_id in source
    dst = tmp_path / "dst"
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "artifacts",
            "download",
            "--artifact-uri",
            source,
            "--dst-path",
            str(dst),
        ],
        env={"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": uri},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert [p.read_text() for p in dst.rglob("weights.txt")] == ["logged weights"]
