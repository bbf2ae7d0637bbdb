"""Rendering: golden files for both traffic modes, determinism, and refusal of bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from canaryflow.kernel.contracts.routing import RoutingConfig
from gitops.files import routing_from_checkout, write_rendering
from gitops.gitops_settings import RenderOptions
from gitops.model import RenderRequest
from gitops.render import render, routing_config
from gitops.traffic import traffic_router
from gitops.yamlio import load_yaml
from tests.gitops.conftest import GOLDEN, GOLDEN_OPTIONS

CASES = {
    "httproute-canary": RenderRequest(
        model="minilm",
        environment="production",
        baseline_version="1",
        canary_version="2",
        weight=25,
        traffic_mode="httproute",
    ),
    "httproute-stable": RenderRequest(
        model="minilm", environment="production", baseline_version="2", traffic_mode="httproute"
    ),
    "configmap-canary": RenderRequest(
        model="minilm",
        environment="staging",
        baseline_version="3",
        canary_version="4",
        weight=10,
        traffic_mode="configmap",
    ),
    "configmap-stable": RenderRequest(
        model="minilm", environment="staging", baseline_version="4", traffic_mode="configmap"
    ),
}


def _files_under(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_render_matches_golden_files(case: str, tmp_path: Path) -> None:
    rendering = render(CASES[case], GOLDEN_OPTIONS)
    golden = GOLDEN / case
    if os.environ.get("CANARYFLOW_UPDATE_GOLDEN") == "1":  # regenerate after an intended change
        write_rendering(golden, rendering)
    assert rendering.files == _files_under(golden)


@pytest.mark.parametrize("case", sorted(CASES))
def test_render_is_byte_identical_on_rerun(case: str, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write_rendering(first, render(CASES[case], GOLDEN_OPTIONS))
    write_rendering(second, render(CASES[case].model_copy(), GOLDEN_OPTIONS.model_copy()))
    assert _files_under(first) == _files_under(second)


def test_layout_is_base_overlay_and_argocd_application() -> None:
    files = render(CASES["httproute-canary"], GOLDEN_OPTIONS).files
    assert sorted(files) == [
        "apps/minilm/base/kustomization.yaml",
        "apps/minilm/base/podmonitor.yaml",
        "apps/minilm/base/service.yaml",
        "apps/minilm/overlays/production/deployment-v1.yaml",
        "apps/minilm/overlays/production/deployment-v2.yaml",
        "apps/minilm/overlays/production/httproute.yaml",
        "apps/minilm/overlays/production/kustomization.yaml",
        "apps/minilm/overlays/production/service-v1.yaml",
        "apps/minilm/overlays/production/service-v2.yaml",
        "argocd/minilm-production.yaml",
    ]
    app = load_yaml(files["argocd/minilm-production.yaml"])
    assert app["spec"]["source"]["path"] == "apps/minilm/overlays/production"
    assert app["spec"]["destination"]["namespace"] == "production"


def test_httproute_splits_by_weight_between_pinned_versions() -> None:
    files = render(CASES["httproute-canary"], GOLDEN_OPTIONS).files
    route = load_yaml(files["apps/minilm/overlays/production/httproute.yaml"])
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [("minilm-v1", 75), ("minilm-v2", 25)]
    canary = load_yaml(files["apps/minilm/overlays/production/deployment-v2.yaml"])
    args = canary["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model-uri") + 1] == "models:/minilm/2"


def test_gpu_deployment_shape() -> None:
    options = GOLDEN_OPTIONS.model_copy(
        update={"gpu_count": 2, "node_selector": {"gpu": "h100"}, "tolerations": []}
    )
    files = render(CASES["configmap-canary"], options).files
    deployment = load_yaml(files["apps/minilm/overlays/staging/deployment.yaml"])
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["nodeSelector"] == {"gpu": "h100"}
    assert "tolerations" not in pod
    assert container["args"][:3] == ["serve", "--routing-file", "/etc/canaryflow/routing.yaml"]


def test_configmap_carries_the_routing_config_and_checkout_reads_it_back(tmp_path: Path) -> None:
    options = GOLDEN_OPTIONS.model_copy(update={"registered_models": {"minilm": "all-MiniLM-L6-v2"}})
    rendering = render(CASES["configmap-canary"], options)
    write_rendering(tmp_path, rendering)
    routing = routing_from_checkout(tmp_path, "minilm", "staging")
    assert isinstance(routing, RoutingConfig)
    assert [(v.version, v.uri, v.weight, v.role) for v in routing.versions] == [
        ("3", "models:/all-MiniLM-L6-v2/3", 90, "baseline"),
        ("4", "models:/all-MiniLM-L6-v2/4", 10, "canary"),
    ]
    assert routing == routing_config(CASES["configmap-canary"], options)


def test_stable_state_serves_one_version_at_full_weight() -> None:
    routing = routing_config(CASES["configmap-stable"], GOLDEN_OPTIONS)
    assert [(v.version, v.weight, v.role) for v in routing.versions] == [("4", 100, "stable")]


def test_a_new_state_removes_files_of_the_previous_one(tmp_path: Path) -> None:
    write_rendering(tmp_path, render(CASES["httproute-canary"], GOLDEN_OPTIONS))
    (tmp_path / "README.md").write_text("kept\n")
    write_rendering(tmp_path, render(CASES["httproute-stable"], GOLDEN_OPTIONS))
    overlay = tmp_path / "apps/minilm/overlays/production"
    assert sorted(p.name for p in overlay.iterdir()) == [
        "deployment-v2.yaml",
        "httproute.yaml",
        "kustomization.yaml",
        "service-v2.yaml",
    ]
    assert (tmp_path / "README.md").read_text() == "kept\n"


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("model", "../etc", "model"),
        ("model", "Minilm", "model"),
        ("model", "9lives", "model"),
        ("model", "m" * 51, "model"),
        ("environment", "prod/../../x", "environment"),
        ("environment", "", "environment"),
        ("weight", 101, "weight"),
        ("weight", -1, "weight"),
        ("canary_version", "champion", "canary_version"),
        ("baseline_version", "latest", "baseline_version"),
        ("traffic_mode", "linkerd", "traffic_mode"),
    ],
)
def test_bad_input_is_refused_naming_the_field(field: str, value: object, needle: str) -> None:
    values: dict[str, object] = {
        "model": "minilm",
        "environment": "production",
        "baseline_version": "1",
        "canary_version": "2",
        "weight": 10,
        "traffic_mode": "configmap",
    }
    values[field] = value
    with pytest.raises(ValidationError) as info:
        RenderRequest.model_validate(values)
    assert needle in str(info.value)


def test_split_without_canary_and_canary_equal_to_baseline_are_refused() -> None:
    with pytest.raises(ValidationError, match="weight"):
        RenderRequest(model="m", environment="e", baseline_version="1", weight=30)
    with pytest.raises(ValidationError, match="canary_version"):
        RenderRequest(model="m", environment="e", baseline_version="1", canary_version="1", weight=30)


def test_unknown_traffic_mode_in_the_renderer_factory() -> None:
    with pytest.raises(ValueError, match="traffic_mode"):
        traffic_router("linkerd")


def test_routing_from_checkout_refuses_paths_leaving_the_repo(tmp_path: Path) -> None:
    with pytest.raises((ValueError, FileNotFoundError)):
        routing_from_checkout(tmp_path, "../..", "x")


def test_shadow_traffic_only_with_a_canary() -> None:
    options = RenderOptions(shadow_sample_rate=0.05)
    assert routing_config(CASES["configmap-canary"], options).shadow.enabled
    assert not routing_config(CASES["configmap-stable"], options).shadow.enabled


@pytest.mark.parametrize("case", sorted(CASES))
def test_checkout_reads_back_the_versions_and_weights_in_both_modes(case: str, tmp_path: Path) -> None:
    request = CASES[case]
    write_rendering(tmp_path, render(request, GOLDEN_OPTIONS))
    read_back = routing_from_checkout(tmp_path, request.model, request.environment)
    assert read_back.versions == routing_config(request, GOLDEN_OPTIONS).versions
