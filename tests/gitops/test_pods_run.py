"""The rendered pods run: for every traffic mode, the overlay built by real Kustomize, each container
started as a local process from the *built* command, args, env and ports, and its own readiness and
liveness probes polled until ready (canaryflow/app/local/kubelet.py says what is translated, and why).

Golden files only show a diff; these tests are the proof that what Argo CD applies would start.
Modes come from `TRAFFIC_MODES`, so a router added later is covered without touching this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from canaryflow.adapters.model_assets import register_minilm
from canaryflow.app.cli import app
from canaryflow.app.local.kubelet import (
    Container,
    containers,
    kustomize_build,
    run_containers,
    wait_until_ready,
    write_files,
)
from canaryflow.kernel.contracts.traffic import TRAFFIC_MODES
from gitops.files import write_rendering
from gitops.gitops_settings import RenderOptions
from gitops.model import RenderRequest
from gitops.render import overlay_dir, render
from tests.gitops.conftest import GOLDEN_OPTIONS
from tests.support.net import free_port

MODEL = "minilm"
REGISTERED = "pods-minilm"  # the registered name differs from the model name, as `registered_models` allows
ENVIRONMENTS = ("production", "staging")
READY_TIMEOUT_S = 180.0


def _request(mode: str, env: str, canary: bool, v1: str = "1", v2: str = "2") -> RenderRequest:
    if canary:
        return RenderRequest(
            model=MODEL, environment=env, baseline_version=v1, canary_version=v2, weight=10, traffic_mode=mode
        )
    return RenderRequest(model=MODEL, environment=env, baseline_version=v2, traffic_mode=mode)


def _built(tmp_path: Path, request: RenderRequest, options: RenderOptions) -> list[dict[str, Any]]:
    repo = tmp_path / f"repo-{request.traffic_mode}-{request.environment}-{request.is_stable}"
    write_rendering(repo, render(request, options))
    return kustomize_build(repo / overlay_dir(request.model, request.environment))


def _shape(container: Container) -> tuple[Any, ...]:
    return (container.argv, container.env, container.ports, container.readiness, container.liveness)


@pytest.mark.parametrize("mode", TRAFFIC_MODES)
def test_every_environment_builds_the_same_containers(mode: str, tmp_path: Path) -> None:
    """Why one environment per mode is enough below: environments differ in namespace only."""
    shapes = {}
    for env in ENVIRONMENTS:
        objects = _built(tmp_path, _request(mode, env, canary=True), GOLDEN_OPTIONS)
        assert {o["metadata"].get("namespace") for o in objects} == {env}
        shapes[env] = sorted((_shape(c) for c in containers(objects, tmp_path / "volumes")), key=repr)
    assert shapes["production"]
    assert shapes["production"] == shapes["staging"]


@pytest.mark.parametrize("canary", [False, True], ids=["stable", "canary"])
@pytest.mark.parametrize("mode", TRAFFIC_MODES)
def test_every_rendered_command_line_is_one_canaryflow_accepts(
    mode: str, canary: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fast and without a model: the built command line, parsed by the real `canaryflow` CLI, reaches
    the server's start with the routing the render meant (httproute's missing --model-name exited 2)."""
    started: list[Any] = []
    monkeypatch.setattr("inference.runner.run", lambda settings, routing: started.append((settings, routing)))
    objects = _built(tmp_path, _request(mode, "production", canary), GOLDEN_OPTIONS)
    found = containers(objects, tmp_path / "volumes")
    assert found
    served: set[str] = set()
    for container in found:
        write_files(container)
        result = CliRunner().invoke(app, container.argv[1:], env=container.env)
        assert result.exit_code == 0, f"{container.label}: {' '.join(container.argv[1:])}\n{result.output}"
        settings, routing = started.pop()
        assert container.readiness is not None
        assert settings.port == container.readiness.port
        assert container.liveness is None or container.liveness.port == settings.port
        if routing is None:  # a routing file: what the server reads at start
            from inference.server import read_routing_file

            routing = read_routing_file(settings.routing_file)
        assert routing.model == MODEL
        served |= {v.version for v in routing.versions}
    # Every pod serves versions of the state and the new one is served (KServe's serverless canary
    # leaves the baseline to the previous revision, which is not in the manifest).
    assert "2" in served and served <= ({"1", "2"} if canary else {"2"})


@pytest.fixture(scope="module")
def registered_versions(mlflow_server: Any) -> tuple[str, str]:
    """The real model once in the shared MLflow, and a second version of the same artefact."""
    v1 = register_minilm(mlflow_server.tracking_uri, REGISTERED)
    client = MlflowClient(tracking_uri=mlflow_server.tracking_uri, registry_uri=mlflow_server.tracking_uri)
    first = client.get_model_version(REGISTERED, v1)
    mlflow.set_tracking_uri(mlflow_server.tracking_uri)
    v2 = mlflow.register_model(first.source, REGISTERED).version
    return v1, str(v2)


# Container shapes already started in this session, by the mode that started them: routers that
# render the same container (httproute and istio share their Deployments; KServe's two deployment
# modes share their predictor) start it once; the shape is all a process can depend on.
_STARTED: dict[tuple[Any, ...], str] = {}


@pytest.mark.parametrize("mode", TRAFFIC_MODES)
def test_every_pod_of_a_canary_state_starts_and_passes_its_probes(
    mode: str, tmp_path: Path, mlflow_server: Any, registered_versions: tuple[str, str]
) -> None:
    """The canary state holds both versions (a stable state's pods are a subset of the same shape).
    Pods run one at a time (two model loads at once would only contend for the 2 cores); each
    containerPort is forwarded to a free local port."""
    v1, v2 = registered_versions
    options = GOLDEN_OPTIONS.model_copy(
        update={"tracking_uri": mlflow_server.tracking_uri, "registered_models": {MODEL: REGISTERED}}
    )
    objects = _built(tmp_path, _request(mode, "production", True, v1, v2), options)
    shapes = [_shape(c) for c in containers(objects, tmp_path / "volumes")]
    found = containers(objects, tmp_path / "volumes", port_map=lambda _port: free_port())
    assert found, f"{mode}: no pod spec in the build"
    versions_seen: set[str] = set()
    keys = [tuple(repr(part) for part in shape) for shape in shapes]
    for key, container in zip(keys, found, strict=True):
        if key in _STARTED:
            continue  # the very same container already started for another mode
        with run_containers([container], tmp_path) as pods:
            wait_until_ready(pods, READY_TIMEOUT_S)
            assert container.readiness is not None
            port = container.readiness.port
            body = {"input": ["a canary"], "model": MODEL}
            reply = httpx.post(f"http://127.0.0.1:{port}/v1/embeddings", json=body, timeout=60)
            assert reply.status_code == 200, reply.text
            assert len(reply.json()["data"][0]["embedding"]) == 384
            versions_seen.add(reply.headers["X-Model-Version"])
            ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=10).json()
            versions_seen |= set(ready["loaded"])
        _STARTED[key] = mode
    assert versions_seen <= {v1, v2}
    assert all(key in _STARTED for key in keys)  # every container of the mode started and got ready
