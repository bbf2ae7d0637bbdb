"""The KServe (Serverless, RawDeployment) and Istio routers: what each state renders, that every document
validates against the upstream CRDs, that Kustomize builds the overlays, that `canaryflow serve` accepts
every rendered command line, and that the state reads back from a checkout and from the cluster."""

from __future__ import annotations

import copy
import gzip
import hashlib
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from canaryflow.app.cli import app
from gitops.files import routing_from_checkout, write_rendering
from gitops.gitops_settings import RenderOptions
from gitops.model import RenderRequest
from gitops.render import render, routing_config
from gitops.traffic import traffic_router
from gitops.traffic.cluster import KubernetesObjects
from gitops.validate import PACKAGED_SCHEMAS, ManifestInvalid, ManifestValidator
from gitops.yamlio import load_yaml
from tests.gitops.conftest import GOLDEN_OPTIONS
from tests.support.kube_api import serverless_reconciled

MODES = ("kserve-serverless", "kserve-raw", "istio")
OVERLAY = "apps/minilm/overlays/production"
OPTIONS = GOLDEN_OPTIONS.model_copy(
    update={"shadow_sample_rate": 0.1, "canary_header_routing": True, "istio_gateways": ["gateway/public"]}
)


def _state(mode: str, state: str) -> RenderRequest:
    base: dict[str, Any] = {"model": "minilm", "environment": "production", "traffic_mode": mode}
    if state == "canary":
        return RenderRequest(**base, baseline_version="3", canary_version="4", weight=20)
    if state == "rollback":
        return RenderRequest(**base, baseline_version="3", rollback_of="4")
    return RenderRequest(**base, baseline_version="4" if state == "promoted" else "3")


def _overlay(mode: str, state: str, options: RenderOptions = OPTIONS) -> dict[str, Any]:
    files = render(_state(mode, state), options).files
    return {
        path.removeprefix(f"{OVERLAY}/"): load_yaml(text) for path, text in files.items() if OVERLAY in path
    }


def _args(predictor: dict[str, Any]) -> list[str]:
    return list(predictor["containers"][0]["args"])


# --- KServe Serverless --------------------------------------------------------------------------


def test_serverless_canary_is_the_latest_revision_at_the_step_weight() -> None:
    docs = _overlay("kserve-serverless", "canary")
    isvc = docs["inferenceservice.yaml"]
    assert isvc["metadata"]["name"] == "minilm-kserve"  # not the base Service's name
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Serverless"}
    predictor = isvc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 20
    assert predictor["labels"] == {"canaryflow.io/version": "4"}
    assert "models:/minilm/4" in _args(predictor)
    state = load_yaml(docs["rollout-state.yaml"]["data"]["routing.yaml"])
    assert [(v["version"], v["weight"], v["role"]) for v in state["versions"]] == [
        ("3", 80, "baseline"),
        ("4", 20, "canary"),
    ]


def test_serverless_promotion_keeps_the_judged_revision_and_rollback_pins_the_previous_model() -> None:
    canary = _overlay("kserve-serverless", "canary")["inferenceservice.yaml"]
    promoted = _overlay("kserve-serverless", "promoted")["inferenceservice.yaml"]
    rollback = _overlay("kserve-serverless", "rollback")["inferenceservice.yaml"]
    # Promotion only drops canaryTrafficPercent: the revision template is unchanged, no new revision.
    assert "canaryTrafficPercent" not in promoted["spec"]["predictor"]
    without_percent = {k: v for k, v in canary["spec"]["predictor"].items() if k != "canaryTrafficPercent"}
    assert promoted["spec"]["predictor"] == without_percent
    # Rollback: the previous model, and all traffic to the last rolled-out revision at once.
    assert rollback["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert "models:/minilm/3" in _args(rollback["spec"]["predictor"])
    assert rollback["spec"]["predictor"]["labels"] == {"canaryflow.io/version": "3"}
    # What KServe copies onto every revision never changes between steps.
    for isvc in (promoted, rollback):
        assert isvc["metadata"] == canary["metadata"]


def test_serverless_stable_state_has_no_canary_percent() -> None:
    predictor = _overlay("kserve-serverless", "stable")["inferenceservice.yaml"]["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor
    assert "models:/minilm/3" in _args(predictor)


# --- KServe RawDeployment -----------------------------------------------------------------------


def test_raw_deployment_is_one_inference_service_per_version_behind_a_weighted_route() -> None:
    docs = _overlay("kserve-raw", "canary")
    for version in ("3", "4"):
        isvc = docs[f"inferenceservice-v{version}.yaml"]
        assert isvc["metadata"]["name"] == f"minilm-v{version}"
        assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "RawDeployment"}
        assert isvc["metadata"]["labels"]["networking.kserve.io/visibility"] == "cluster-local"
        assert isvc["metadata"]["labels"]["canaryflow.io/version"] == version
        assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
        assert f"models:/minilm/{version}" in _args(isvc["spec"]["predictor"])
    route = docs["httproute-predictors.yaml"]
    assert route["spec"]["parentRefs"][0]["name"] == OPTIONS.gateway_name
    assert [(b["name"], b["port"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]] == [
        ("minilm-v3-predictor", 80, 80),
        ("minilm-v4-predictor", 80, 20),
    ]
    stable = _overlay("kserve-raw", "promoted")
    assert sorted(p for p in stable if p.startswith("inferenceservice")) == ["inferenceservice-v4.yaml"]
    # Promotion leaves the judged InferenceService as it was: KServe restarts no pod.
    assert stable["inferenceservice-v4.yaml"] == docs["inferenceservice-v4.yaml"]


def test_kserve_pod_monitor_scrapes_every_version_by_port_number() -> None:
    for mode in ("kserve-serverless", "kserve-raw"):
        monitor = _overlay(mode, "canary")["podmonitor-predictor.yaml"]
        assert monitor["spec"]["selector"]["matchLabels"] == {
            "app.kubernetes.io/name": "minilm",
            "component": "predictor",
        }
        assert monitor["spec"]["podMetricsEndpoints"][0]["portNumber"] == 8080
        # The pod's model and version become target labels: the metric providers tell the arms apart by them.
        targets = {r["targetLabel"] for r in monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]}
        assert targets == {"canaryflow_model", "canaryflow_version"}
    serverless = _overlay("kserve-serverless", "canary")["podmonitor-predictor.yaml"]["spec"][
        "podMetricsEndpoints"
    ]
    assert [e.get("port") for e in serverless] == [None, "http-usermetric"]  # Knative's queue-proxy


# --- Istio --------------------------------------------------------------------------------------


def test_istio_splits_between_subsets_with_header_route_and_mirror() -> None:
    docs = _overlay("istio", "canary")
    rule = docs["destinationrule.yaml"]
    assert rule["spec"]["host"] == "minilm"
    assert rule["spec"]["subsets"] == [
        {"name": "v3", "labels": {"canaryflow.io/version": "3"}},
        {"name": "v4", "labels": {"canaryflow.io/version": "4"}},
    ]
    service = docs["virtualservice.yaml"]
    assert service["spec"]["hosts"] == ["minilm"]
    assert service["spec"]["gateways"] == ["gateway/public", "mesh"]
    header, weighted = service["spec"]["http"]
    assert header["match"] == [{"headers": {"x-canary": {"exact": "always"}}}]
    assert [d["destination"]["subset"] for d in header["route"]] == ["v4"]
    assert [(d["destination"]["subset"], d["weight"]) for d in weighted["route"]] == [("v3", 80), ("v4", 20)]
    assert weighted["mirror"]["subset"] == "v4" and weighted["mirrorPercentage"] == {"value": 10.0}
    # The per-version Deployments are the httproute mode's: the version label the subsets select on.
    deployment = docs["deployment-v4.yaml"]
    assert deployment["spec"]["template"]["metadata"]["labels"]["canaryflow.io/version"] == "4"
    assert docs["deployment-v4.yaml"] == _overlay("httproute", "canary")["deployment-v4.yaml"]


def test_istio_without_options_and_in_a_stable_state_routes_by_weight_only() -> None:
    plain = _overlay("istio", "canary", GOLDEN_OPTIONS)["virtualservice.yaml"]["spec"]
    assert "gateways" not in plain and [r["name"] for r in plain["http"]] == ["weighted"]
    assert "mirror" not in plain["http"][0]
    stable = _overlay("istio", "promoted")["virtualservice.yaml"]["spec"]["http"]
    assert [r["name"] for r in stable] == ["weighted"] and "mirror" not in stable[0]
    assert [(d["destination"]["subset"], d["weight"]) for d in stable[0]["route"]] == [("v4", 100)]


# --- every mode ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("state", ["canary", "stable", "promoted", "rollback"])
def test_every_document_validates_against_the_upstream_schemas(mode: str, state: str) -> None:
    ManifestValidator("1.33").validate_rendering(render(_state(mode, state), OPTIONS))


@pytest.mark.parametrize(
    ("mode", "file", "mutate", "reason"),
    [
        (
            "kserve-serverless",
            "inferenceservice.yaml",
            lambda d: d["spec"]["predictor"].update(canaryTrafficPercnt=20),
            "spec.predictor",
        ),
        (
            "kserve-serverless",
            "inferenceservice.yaml",
            lambda d: d["spec"]["predictor"].update(canaryTrafficPercent="20%"),
            "canaryTrafficPercent",
        ),
        ("istio", "virtualservice.yaml", lambda d: d["spec"]["http"][-1].update(wieght=1), "spec.http"),
        ("istio", "destinationrule.yaml", lambda d: d["spec"].update(subsets="v3"), "spec.subsets"),
    ],
)
def test_an_invalid_document_is_refused_naming_the_field(mode: str, file: str, mutate, reason: str) -> None:
    doc = copy.deepcopy(_overlay(mode, "canary")[file])
    mutate(doc)
    with pytest.raises(ManifestInvalid, match=reason):
        ManifestValidator("1.33").validate_document(doc)


def test_packaged_inference_service_crd_is_the_upstream_blob() -> None:
    data = gzip.decompress((PACKAGED_SCHEMAS / "serving.kserve.io_inferenceservices.yaml.gz").read_bytes())
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert blob in (PACKAGED_SCHEMAS / "PROVENANCE.md").read_text()


@pytest.mark.parametrize("mode", MODES)
def test_kustomize_builds_the_overlay(mode: str, tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is needed for `kubectl kustomize`")
        pytest.skip("kubectl not installed (apt-get install kubectl)")
    write_rendering(tmp_path, render(_state(mode, "canary"), OPTIONS))
    built = subprocess.run(
        [kubectl, "kustomize", str(tmp_path / OVERLAY)], capture_output=True, text=True, check=True
    ).stdout
    docs = [d for d in (load_yaml(part) for part in built.split("\n---\n")) if d]
    kinds = Counter(d["kind"] for d in docs)
    expected = {
        "kserve-serverless": {"InferenceService": 1, "ConfigMap": 1, "PodMonitor": 2, "Service": 1},
        "kserve-raw": {"InferenceService": 2, "HTTPRoute": 1, "ConfigMap": 1, "PodMonitor": 2, "Service": 1},
        "istio": {"Deployment": 2, "Service": 3, "DestinationRule": 1, "VirtualService": 1, "PodMonitor": 1},
    }[mode]
    assert kinds == expected
    assert {d["metadata"]["namespace"] for d in docs} == {"production"}


def _serve_commands(mode: str) -> list[list[str]]:
    docs = _overlay(mode, "canary")
    specs = [d["spec"]["predictor"] for d in docs.values() if d["kind"] == "InferenceService"]
    specs += [d["spec"]["template"]["spec"] for d in docs.values() if d["kind"] == "Deployment"]
    return [[*c.get("command", [])[1:], *c["args"]] for spec in specs for c in spec["containers"]]


@pytest.mark.parametrize("mode", [*MODES, "httproute"])
def test_canary_serve_accepts_every_rendered_command_line(mode: str, monkeypatch) -> None:
    started: list[tuple[Any, Any]] = []
    # Parsing and validation are the real CLI's; only the server start is recorded instead of run.
    monkeypatch.setattr("inference.runner.run", lambda settings, routing: started.append((settings, routing)))
    commands = _serve_commands(mode)
    assert commands
    for args in commands:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    served = {(r.model, r.versions[0].version, r.versions[0].uri) for _, r in started}
    assert ("minilm", "4", "models:/minilm/4") in served
    assert {(s.host, s.port) for s, _ in started} <= {("0.0.0.0", 8080), ("0.0.0.0", GOLDEN_OPTIONS.port)}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("state", ["canary", "promoted", "rollback"])
def test_a_checkout_reads_back_the_state_it_was_rendered_from(mode: str, state: str, tmp_path: Path) -> None:
    request = _state(mode, state)
    write_rendering(tmp_path, render(request, OPTIONS))
    expected = routing_config(request, OPTIONS)
    if mode.startswith("kserve") or request.is_stable:
        assert routing_from_checkout(tmp_path, "minilm", "production") == expected
    else:  # Istio mirrors from the VirtualService; the sample rate comes back as a percentage
        found = routing_from_checkout(tmp_path, "minilm", "production")
        assert found.versions == expected.versions and found.shadow.enabled
        assert found.shadow.sample_rate == pytest.approx(expected.shadow.sample_rate)


# --- live weights ---------------------------------------------------------------------------------


def _applied(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "metadata": {**doc["metadata"], "namespace": "ml"}}


def test_serverless_live_weights_follow_what_knative_routes(cluster) -> None:
    server, objects = cluster
    router = traffic_router("kserve-serverless")
    isvc = _applied(_overlay("kserve-serverless", "canary")["inferenceservice.yaml"])
    path = KubernetesObjects.path("serving.kserve.io/v1beta1", "inferenceservices", "ml", "minilm-kserve")
    # The canary's revision is not ready yet: its share still goes to the previous version.
    server.serve(path, serverless_reconciled(server, isvc, previous_version="3", latest_ready=False))
    assert router.live_weights(objects, "ml", "minilm") == {"3": 100}
    server.serve(path, serverless_reconciled(server, isvc, previous_version="3"))
    assert router.live_weights(objects, "ml", "minilm") == {"3": 80, "4": 20}
    assert any("/revisions/minilm-kserve-predictor-00002" in r for r in server.requests)
    # Rolled back: the restored predictor's revision at 0%, the last rolled-out one at 100%.
    rolled_back = _applied(_overlay("kserve-serverless", "rollback")["inferenceservice.yaml"])
    server.serve(path, serverless_reconciled(server, rolled_back, previous_version="3"))
    assert router.live_weights(objects, "ml", "minilm") == {"3": 100}


def test_serverless_revision_without_a_version_label_is_never_a_version(cluster) -> None:
    server, objects = cluster
    isvc = _applied(_overlay("kserve-serverless", "canary")["inferenceservice.yaml"])
    del isvc["spec"]["predictor"]["labels"]
    path = KubernetesObjects.path("serving.kserve.io/v1beta1", "inferenceservices", "ml", "minilm-kserve")
    server.serve(path, serverless_reconciled(server, isvc, previous_version="3"))
    weights = traffic_router("kserve-serverless").live_weights(objects, "ml", "minilm")
    assert weights == {"3": 80, "revision:minilm-kserve-predictor-00002": 20}


def test_istio_live_weights_ignore_the_header_route(cluster) -> None:
    server, objects = cluster
    service = _applied(_overlay("istio", "canary")["virtualservice.yaml"])
    server.serve(KubernetesObjects.path("networking.istio.io/v1", "virtualservices", "ml", "minilm"), service)
    assert traffic_router("istio").live_weights(objects, "ml", "minilm") == {"3": 80, "4": 20}


# --- the CLIs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_gitops_and_workflow_render_take_the_mode_from_a_policy(
    mode: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("CANARYFLOW_CONFIG", raising=False)
    monkeypatch.delenv("CANARYFLOW_GITOPS_TRAFFIC_MODE", raising=False)
    default = (Path(__file__).resolve().parents[2] / "policies" / "default.yaml").read_text()
    policy = tmp_path / "policy.yaml"
    policy.write_text(default.replace("traffic_mode: configmap", f"traffic_mode: {mode}"))
    out = tmp_path / "out"
    args = ["--model", "minilm", "--version", "4", "--baseline-version", "3", "--weight", "10"]
    rendered = CliRunner().invoke(
        app,
        [
            "gitops",
            "render",
            *args,
            "--policy",
            str(policy),
            "--out",
            str(out),
            "--repo-url",
            "https://x/r.git",
        ],
    )
    assert rendered.exit_code == 0, rendered.output
    overlay = {p.name for p in (out / "apps/minilm/overlays/production").iterdir()}
    expected = {"kserve-serverless": "inferenceservice.yaml", "kserve-raw": "inferenceservice-v4.yaml"}
    assert expected.get(mode, "virtualservice.yaml") in overlay
    spec = ["--model", "minilm", "--baseline-version", "3", "--canary-version", "4", "--rollout-id", "r1"]
    workflow = CliRunner().invoke(app, ["workflow", "render", *spec, "--policy", str(policy)])
    assert workflow.exit_code == 0, workflow.output
    assert "kind: Workflow" in workflow.stdout and "wait-ready" in workflow.stdout
