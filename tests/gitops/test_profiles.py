"""Serving profiles: every profile renders under every traffic mode, the render validates against the
upstream schemas (Kubernetes via kubernetes-validate, CRDs via gitops/schemas), real Kustomize builds
the overlay, and each built pod runs the profile's server with the version's artifacts.

What a profile says about its server (image, flags, ports, probes) is checked against the servers'
own sources in test_profile_conformance.py; that the `custom` command really starts and reads the
downloaded artifacts is test_custom_profile_runs.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from canaryflow.app.local.kubelet import kustomize_build
from canaryflow.kernel.contracts.serving import SERVING_PROFILES
from canaryflow.kernel.contracts.serving_config import ServingConfig
from canaryflow.kernel.contracts.traffic import TRAFFIC_MODES
from gitops.files import routing_from_checkout, write_rendering
from gitops.model import RenderRequest
from gitops.profiles import MODEL_MOUNT, PROFILES
from gitops.render import overlay_dir, render
from gitops.validate import ManifestValidator
from tests.gitops.conftest import GOLDEN_OPTIONS

SOURCES = {
    "3": "s3://models/minilm/1/a3f0/artifacts/model",
    "4": "s3://models/minilm/1/b7c2/artifacts/model",
}
CUSTOM = {
    "image": "registry.example.com/team/embedder:2.1.0",
    "command": ["python3", "-m", "embedder"],
    "args": ["--weights", "${model_dir}", "--name", "${model_name}", "--listen", "0.0.0.0:${port}"],
    "env": {"EMBEDDER_VERSION": "${model_version}"},
    "port": 9090,
    "readiness_path": "/ready",
    "liveness_path": "/live",
    "metrics_port": 9091,
}


def serving(profile: str) -> ServingConfig:
    if profile == "kserve-runtime":
        return ServingConfig(profile="kserve-runtime", model_format="sklearn")
    if profile == "custom":
        return ServingConfig.model_validate({"profile": "custom", "custom": CUSTOM})
    return ServingConfig.model_validate({"profile": profile})


def _request(profile: str, mode: str, canary: bool = True) -> RenderRequest:
    values: dict[str, Any] = {
        "model": "minilm",
        "environment": "production",
        "baseline_version": "3",
        "traffic_mode": mode,
        "serving": serving(profile),
        "sources": SOURCES,
    }
    if canary:
        values |= {"canary_version": "4", "weight": 20}
    return RenderRequest.model_validate(values)


def _cases() -> list[Any]:
    cases = []
    for profile in SERVING_PROFILES:
        for mode in TRAFFIC_MODES:
            cases.append(pytest.param(profile, mode, id=f"{profile}-{mode}"))
    return cases


def _pod_specs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = []
    for obj in objects:
        if obj["kind"] == "Deployment":
            specs.append(obj["spec"]["template"]["spec"])
        elif obj["kind"] == "InferenceService":
            specs.append(obj["spec"]["predictor"])
    return specs


def test_every_profile_has_exactly_one_implementation() -> None:
    assert sorted(PROFILES) == sorted(SERVING_PROFILES)
    for name, profile in PROFILES.items():
        assert profile.name == name


@pytest.mark.parametrize(("profile", "mode"), _cases())
def test_every_profile_renders_validates_and_builds_under_every_mode(
    profile: str, mode: str, tmp_path: Path
) -> None:
    request = _request(profile, mode)
    rendering = render(request, GOLDEN_OPTIONS)
    ManifestValidator("1.33").validate_rendering(rendering)
    write_rendering(tmp_path, rendering)
    objects = kustomize_build(tmp_path / overlay_dir("minilm", "production"))
    specs = _pod_specs(objects)
    assert specs, "no pod spec in the build"
    kserve = mode.startswith("kserve")
    for spec in specs:
        if "model" in spec:  # a ServingRuntime picks the container; the artifacts are its storageUri
            assert profile == "kserve-runtime" and kserve
            assert spec["model"]["modelFormat"] == {"name": "sklearn"}
            assert spec["model"]["storageUri"] in SOURCES.values()
            continue
        container = spec["containers"][0]
        if container["name"] == "router":  # configmap's proxy in front of one-version servers
            continue
        text = repr(container)
        if profile == "canaryflow":
            assert container["command"] == ["canaryflow"] and "initContainers" not in spec
            continue
        assert "canaryflow" not in container.get("command", [])
        if kserve:  # KServe's storage initializer fetches the source into the mount
            env = {e["name"]: e["value"] for e in container["env"]}
            assert env["STORAGE_URI"] in SOURCES.values()
            assert MODEL_MOUNT in text
        else:  # the download init container does, into an emptyDir the server reads
            (init,) = spec["initContainers"]
            assert init["command"] == ["mlflow", "artifacts", "download"]
            assert init["args"][1] in SOURCES.values() and init["args"][3] == MODEL_MOUNT
            assert f"{MODEL_MOUNT}/model" in text  # the source's last component, where mlflow puts it
        if profile == "custom":
            assert container["image"] == CUSTOM["image"]
            env = {e["name"]: e["value"] for e in container["env"]}
            assert env["EMBEDDER_VERSION"] in SOURCES  # the template's ${model_version}, filled
            assert container["ports"][0]["containerPort"] == 9090


@pytest.mark.parametrize("profile", [p for p in SERVING_PROFILES if p != "canaryflow"])
def test_configmap_puts_one_version_servers_behind_a_proxy_the_base_service_selects(
    profile: str, tmp_path: Path
) -> None:
    write_rendering(tmp_path, render(_request(profile, "configmap"), GOLDEN_OPTIONS))
    objects = kustomize_build(tmp_path / overlay_dir("minilm", "production"))
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert by_name[("Service", "minilm")]["spec"]["selector"] == {
        "app.kubernetes.io/name": "minilm",
        "canaryflow.io/component": "router",
    }
    monitor = by_name[("PodMonitor", "minilm")]["spec"]["selector"]
    assert monitor["matchExpressions"] == [{"key": "canaryflow.io/component", "operator": "DoesNotExist"}]
    router = by_name[("Deployment", "minilm-router")]["spec"]["template"]
    assert router["metadata"]["labels"]["canaryflow.io/component"] == "router"
    config = by_name[("ConfigMap", "minilm-routing")]["data"]["nginx.conf"]
    assert "80% minilm-v3;" in config and "* minilm-v4;" in config
    assert {("Deployment", "minilm-v3"), ("Service", "minilm-v4")} <= set(by_name)


@pytest.mark.parametrize("mode", TRAFFIC_MODES)
@pytest.mark.parametrize("profile", [p for p in SERVING_PROFILES if p != "canaryflow"])
def test_a_checkout_reads_back_the_pinned_versions_whatever_the_server(
    profile: str, mode: str, tmp_path: Path
) -> None:
    write_rendering(tmp_path, render(_request(profile, mode), GOLDEN_OPTIONS))
    routing = routing_from_checkout(tmp_path, "minilm", "production")
    assert {(v.version, v.uri, v.weight) for v in routing.versions} == {
        ("3", "models:/minilm/3", 80),
        ("4", "models:/minilm/4", 20),
    }


def test_the_base_podmonitor_scrapes_the_servers_metrics_port() -> None:
    files = render(_request("triton", "httproute"), GOLDEN_OPTIONS).files
    monitor = files["apps/minilm/base/podmonitor.yaml"]
    assert "port: metrics" in monitor and "path: /metrics" in monitor
    deployment = files["apps/minilm/overlays/production/deployment-v3.yaml"]
    assert "containerPort: 8002" in deployment and "name: metrics" in deployment


def test_kserve_refuses_a_source_its_storage_initializer_cannot_read() -> None:
    request = _request("vllm", "kserve-raw").model_copy(update={"sources": {}})
    with pytest.raises(ValueError, match=r"sources: minilm v3's artifact source 'models:/minilm/3'"):
        render(request, GOLDEN_OPTIONS)


def test_kserve_runtime_outside_kserve_needs_a_kserve_model_server() -> None:
    request = _request("kserve-runtime", "istio")
    request = request.model_copy(
        update={"serving": ServingConfig(profile="kserve-runtime", model_format="onnx")}
    )
    with pytest.raises(ValueError, match=r"serving.model_format: 'onnx' runs outside KServe only as one of"):
        render(request, GOLDEN_OPTIONS)


def test_a_rollout_commits_the_server_its_policy_names_with_sources_resolved(
    empty_remote: Path, make_settings, spec
) -> None:
    """The GitOps repo of the steps: the policy's serving section picks the server, and each version's
    source is asked of the registry when the step renders (here a resolver standing for MLflow's)."""
    from canaryflow.kernel.contracts.serving_config import ServingConfig as Serving
    from gitops.git import GitRepo
    from tests.gitops.conftest import remote_file

    asked: list[tuple[str, str]] = []

    def source(model: str, version: str) -> str:
        asked.append((model, version))
        return f"s3://models/{model}/{version}/artifacts/model"

    repo = GitRepo(
        make_settings(empty_remote, traffic_mode="httproute"),
        serving_for=lambda _spec: Serving(profile="vllm"),
        version_source=source,
    )
    assert repo.commit_step(spec, 10, "canary").changed
    deployment = remote_file(empty_remote, "apps/minilm/overlays/production/deployment-v2.yaml")
    assert "vllm.entrypoints.openai.api_server" in deployment
    assert "s3://models/minilm/2/artifacts/model" in deployment
    assert sorted(asked) == [("minilm", "1"), ("minilm", "2")]
