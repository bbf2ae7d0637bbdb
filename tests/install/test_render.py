"""`canaryflow install render`: every overlay builds with real Kustomize and validates strictly, the
objects reference each other consistently, no secret is inlined, RBAC is what a rollout calls."""

from __future__ import annotations

from typing import Any

import pytest

from canaryflow.app.install.options import CONFIG_MAP, CONTROLLER, SECRET
from gitops.validate import ManifestInvalid, ManifestValidator
from tests.install.conftest import one
from tests.workflows.conftest import ArgoSchema

VARIANTS = ("plain/gpu", "plain/cpu", "full/gpu", "full/cpu")


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_validates(
    variant: str,
    built: dict[str, list[dict[str, Any]]],
    validator: ManifestValidator,
    argo_schema: ArgoSchema,
) -> None:
    kinds = set()
    for doc in built[variant]:
        kinds.add(doc["kind"])
        if doc["kind"] == "WorkflowTemplate":
            argo_schema.validate(doc)
        else:
            validator.validate_document(doc)
    expected = {
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
        "HTTPRoute",
        "ServiceMonitor",
        "NetworkPolicy",
    }
    assert expected | {"PrometheusRule", "WorkflowTemplate", "Role", "RoleBinding"} <= kinds


def test_validation_is_strict(built: dict[str, list[dict[str, Any]]], validator: ManifestValidator) -> None:
    """A typo in a field fails, for a core kind and for each CRD the tree uses."""
    for kind in ("Deployment", "HTTPRoute", "ServiceMonitor", "PrometheusRule"):
        doc = dict(one(built["plain/gpu"], kind))
        doc["spec"] = {**doc["spec"], "replicaz": 2}
        with pytest.raises(ManifestInvalid, match="replicaz"):
            validator.validate_document(doc)


def test_controller_deployment_runs_safely(built: dict[str, list[dict[str, Any]]]) -> None:
    deployment = one(built["plain/gpu"], "Deployment", CONTROLLER)
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/tmp"]]["emptyDir"] is not None
    claim = volumes[mounts["/var/lib/canaryflow"]]["persistentVolumeClaim"]["claimName"]
    one(built["plain/gpu"], "PersistentVolumeClaim", claim)
    env = {e["name"]: e for e in container["env"]}
    config = one(built["plain/gpu"], "ConfigMap", CONFIG_MAP)["data"]
    assert config["CANARYFLOW_CONTROLLER_DB_PATH"].startswith("/var/lib/canaryflow/")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    (port,) = container["ports"]
    assert port["name"] == "http" and str(port["containerPort"]) == config["CANARYFLOW_CONTROLLER_PORT"]
    assert "CANARYFLOW_CONTROLLER_MLFLOW_WEBHOOK_SECRET" in env


@pytest.mark.parametrize("variant", VARIANTS)
def test_secrets_are_referenced_never_inlined(variant: str, built: dict[str, list[dict[str, Any]]]) -> None:
    # No Secret at all: no long-lived service-account token (the pod's projected one serves Argo).
    assert [doc for doc in built[variant] if doc["kind"] == "Secret"] == []
    pod = one(built[variant], "Deployment", CONTROLLER)["spec"]["template"]["spec"]
    for item in pod["containers"][0]["env"]:
        if item["name"] == "CANARYFLOW_WORKFLOWS_ARGO_TOKEN_PATH":
            continue  # a path to the projected token, not a secret
        if "SECRET" in item["name"] or "TOKEN" in item["name"] or "URL" in item["name"]:
            assert item["valueFrom"]["secretKeyRef"]["name"] == SECRET
    config = one(built[variant], "ConfigMap", CONFIG_MAP)["data"]
    assert not [key for key in config if "SECRET" in key or key.endswith("TOKEN")]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_argo_token_is_the_pods_projected_rotated_token(
    variant: str, built: dict[str, list[dict[str, Any]]]
) -> None:
    pod = one(built[variant], "Deployment", CONTROLLER)["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if "projected" in v]
    [source] = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["path"] == "token" and 600 <= token["expirationSeconds"] <= 3600
    container = pod["containers"][0]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    env = {item["name"]: item for item in container["env"]}
    assert env["CANARYFLOW_WORKFLOWS_ARGO_TOKEN_PATH"]["value"] == f"{mount['mountPath']}/token"
    assert "CANARYFLOW_WORKFLOWS_ARGO_TOKEN" not in env
    assert pod["serviceAccountName"] == "canaryflow-controller"


def _rules(docs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    return {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d["rules"] for d in docs if d["kind"] == "Role"
    }


def test_rbac_is_least_privilege(built: dict[str, list[dict[str, Any]]]) -> None:
    docs = built["full/gpu"]
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    roles = _rules(docs)
    for rules in roles.values():
        for rule in rules:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
    assert roles[("production", "canaryflow-readiness")] == [
        {"apiGroups": ["apps"], "resources": ["deployments/status"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},  # the default policy's router
    ]
    controller_verbs = {
        r: set(rule["verbs"]) for rule in roles[("canaryflow", CONTROLLER)] for r in rule["resources"]
    }
    assert controller_verbs["workflows"] >= {"create", "get", "update"}
    assert "delete" not in controller_verbs["workflows"]
    binding = one(docs, "RoleBinding", "canaryflow-readiness")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "canaryflow-workflow", "namespace": "canaryflow"}
    ]
    pod = one(docs, "Deployment", CONTROLLER)["spec"]["template"]["spec"]
    one(docs, "ServiceAccount", pod["serviceAccountName"])
    assert pod["automountServiceAccountToken"] is False


def test_objects_point_at_each_other(built: dict[str, list[dict[str, Any]]]) -> None:
    docs = built["full/gpu"]
    deployment = one(docs, "Deployment", CONTROLLER)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one(docs, "Service", CONTROLLER)
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (backend,) = one(docs, "HTTPRoute")["spec"]["rules"][0]["backendRefs"]
    assert backend["name"] == CONTROLLER and backend["port"] == service["spec"]["ports"][0]["port"]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    policy = one(docs, "NetworkPolicy", CONTROLLER)
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    template = one(docs, "WorkflowTemplate")
    containers = [t["container"] for t in template["spec"]["templates"] if "container" in t]
    assert containers
    for container in containers:
        assert container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert {"configMapRef": {"name": CONFIG_MAP, "optional": True}} in container["envFrom"]
        assert {"secretRef": {"name": SECRET, "optional": True}} in container["envFrom"]


def _settings_from(config: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from canaryflow.adapters.metrics.factory import MetricsSettings
    from controller.controller_settings import ControllerSettings
    from gitops.gitops_settings import GitOpsSettings
    from workflows.workflow_settings import WorkflowSettings

    for key, value in config.items():
        monkeypatch.setenv(key, value)
    return {
        "controller": ControllerSettings(),
        "gitops": GitOpsSettings(),
        "workflows": WorkflowSettings(),
        "metrics": MetricsSettings(),
    }


def test_overlays_configure_the_inference_render(
    built: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ConfigMap the overlays patch parses into the settings the GitOps render uses."""
    gpu = _settings_from(one(built["full/gpu"], "ConfigMap", CONFIG_MAP)["data"], monkeypatch)
    render = gpu["gitops"].render_options()
    assert render.gpu_count == 1 and render.image.endswith("-cuda") and render.tolerations
    assert gpu["workflows"].engine == "argo" and gpu["workflows"].argo_namespace == "canaryflow"
    assert gpu["controller"].kubernetes.in_cluster and gpu["controller"].kubernetes.namespace == "production"
    assert gpu["metrics"].backend == "prometheus"
    cpu = _settings_from(one(built["full/cpu"], "ConfigMap", CONFIG_MAP)["data"], monkeypatch)
    render = cpu["gitops"].render_options()
    assert render.gpu_count == 0 and render.node_selector == {} and render.tolerations == []
    assert render.repo_url == "https://github.com/example/gitops.git"
