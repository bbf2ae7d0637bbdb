"""Builders of the Kubernetes documents every traffic mode shares; pure functions of their inputs.

Documents are plain dicts in the order Kubernetes users read them (kind, metadata, spec); the order is
fixed, so dumping them gives the same bytes every time.
"""

from __future__ import annotations

from typing import Any

from canaryflow.kernel.contracts.providers import ARM_MODEL_LABEL, ARM_VERSION_LABEL
from canaryflow.kernel.contracts.routing import RoutedVersion
from gitops.gitops_settings import RenderOptions
from gitops.model import RenderRequest
from gitops.profiles.base import Server

Doc = dict[str, Any]

PART_OF = "canaryflow"
VERSION_LABEL = "canaryflow.io/version"
ROLE_LABEL = "canaryflow.io/role"
HTTP_PORT_NAME = "http"
METRICS_PORT_NAME = "metrics"
SERVICE_PORT = 80
# An overlay document under this key is no file: its `patches` (Kustomize patches of the base) go into
# the overlay's kustomization.
PATCHES_KEY = "kustomization-patches"


def model_labels(model: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": model,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": PART_OF,
    }


def version_labels(model: str, version: RoutedVersion) -> dict[str, str]:
    return {**model_labels(model), VERSION_LABEL: version.version, ROLE_LABEL: version.role}


def version_name(model: str, version: str) -> str:
    return f"{model}-v{version}"


def namespace(request: RenderRequest, options: RenderOptions) -> str:
    return options.namespace or request.environment


def model_uri(model: str, version: str, options: RenderOptions) -> str:
    """The exact registry version: an alias would let the cluster drift from what git says."""
    registered = options.registered_models.get(model, model)
    return f"models:/{registered}/{version}"


def serve_args(uri: str, model: str, port: int) -> list[str]:
    """`canaryflow serve` for one version: the server labels its metrics with `model` and the version."""
    return ["serve", "--model-uri", uri, "--model-name", model, "--host", "0.0.0.0", "--port", str(port)]


def model_uri_of(args: list[str]) -> str:
    """The `--model-uri` of a `serve_args` command line (what a checkout's overlay pins)."""
    return args[args.index("--model-uri") + 1]


def _metadata(name: str, labels: dict[str, str]) -> Doc:
    return {"name": name, "labels": dict(labels)}


def container_resources(options: RenderOptions, overrides: dict[str, dict[str, str]]) -> Doc:
    """Requests and limits from the settings (GPU included), a server template's values on top."""
    gpu = {options.gpu_resource: str(options.gpu_count)} if options.gpu_count else {}
    return {
        "requests": {
            "cpu": options.cpu_request,
            "memory": options.memory_request,
            **gpu,
            **overrides.get("requests", {}),
        },
        "limits": {"memory": options.memory_limit, **gpu, **overrides.get("limits", {})},
    }


def inference_container(server: Server, options: RenderOptions) -> Doc:
    """The serving container of a Deployment's pod: readiness gates traffic, liveness restarts a hung
    server (after its startup probe, where loading a model takes minutes)."""
    ports = [{"name": HTTP_PORT_NAME, "containerPort": server.port, "protocol": "TCP"}]
    if server.metrics_port is not None:
        ports.append({"name": METRICS_PORT_NAME, "containerPort": server.metrics_port, "protocol": "TCP"})
    container: Doc = {"name": "inference", "image": server.image}
    if server.command:
        container["command"] = list(server.command)
    container["args"] = list(server.args)
    container["ports"] = ports
    container["env"] = [{"name": name, "value": value} for name, value in server.env]
    container["resources"] = container_resources(options, server.resources)
    container["readinessProbe"] = {
        "httpGet": {"path": server.readiness_path, "port": HTTP_PORT_NAME},
        "periodSeconds": 5,
        "failureThreshold": 3,
    }
    container["livenessProbe"] = {
        "httpGet": {"path": server.liveness_path, "port": HTTP_PORT_NAME},
        "initialDelaySeconds": 30,
        "periodSeconds": 10,
    }
    if server.start_timeout_s is not None:
        container["startupProbe"] = {
            "httpGet": {"path": server.liveness_path, "port": HTTP_PORT_NAME},
            "periodSeconds": 10,
            "failureThreshold": -(-server.start_timeout_s // 10),
        }
    return container


def inference_deployment(
    *,
    name: str,
    labels: dict[str, str],
    selector: dict[str, str],
    server: Server,
    options: RenderOptions,
    volumes: list[Doc] | None = None,
    volume_mounts: list[Doc] | None = None,
    init_containers: list[Doc] | None = None,
) -> Doc:
    """The GPU inference server: readiness gates traffic, a rollout never drops below `replicas`."""
    container = inference_container(server, options)
    if volume_mounts:
        container["volumeMounts"] = volume_mounts
    pod_spec: Doc = {}
    if init_containers:
        pod_spec["initContainers"] = init_containers
    pod_spec["containers"] = [container]
    if options.node_selector:
        pod_spec["nodeSelector"] = dict(sorted(options.node_selector.items()))
    if options.tolerations:
        pod_spec["tolerations"] = [t.model_dump(exclude_none=True) for t in options.tolerations]
    if volumes:
        pod_spec["volumes"] = volumes
    return deployment(name=name, labels=labels, selector=selector, pod_spec=pod_spec, options=options)


def deployment(
    *, name: str, labels: dict[str, str], selector: dict[str, str], pod_spec: Doc, options: RenderOptions
) -> Doc:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, labels),
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": dict(selector)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }


def service(*, name: str, labels: dict[str, str], selector: dict[str, str]) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, labels),
        "spec": {
            "selector": dict(selector),
            "ports": [
                {
                    "name": HTTP_PORT_NAME,
                    "port": SERVICE_PORT,
                    "targetPort": HTTP_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def arm_relabelings() -> list[Doc]:
    """Every scraped series gets the pod's model and version as target labels (`canaryflow_model`,
    `canaryflow_version`): how a server that knows nothing of canaryflow's versions (vLLM, Triton, TEI,
    MLServer, Knative's queue-proxy) is told apart per arm by the metric providers
    (`canaryflow.kernel.contracts.providers`)."""
    return [
        {
            "action": "replace",
            "sourceLabels": [f"__meta_kubernetes_pod_label_{_sanitized(label)}"],
            "targetLabel": target,
        }
        for label, target in (("app.kubernetes.io/name", ARM_MODEL_LABEL), (VERSION_LABEL, ARM_VERSION_LABEL))
    ]


def _sanitized(label: str) -> str:
    """A pod label as Prometheus' Kubernetes discovery names it (non-alphanumerics become `_`)."""
    return "".join(c if c.isalnum() else "_" for c in label)


def pod_monitor(
    model: str, options: RenderOptions, port: str = HTTP_PORT_NAME, path: str = "/metrics"
) -> Doc:
    """Scrapes every version's pods (the serving profile's metrics port and path); the `version` metric
    label, or the pod's version label, tells baseline from canary."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": _metadata(model, model_labels(model)),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": model}},
            "podMetricsEndpoints": [
                {
                    "port": port,
                    "path": path,
                    "interval": options.scrape_interval,
                    "relabelings": arm_relabelings(),
                }
            ],
        },
    }


def application(request: RenderRequest, options: RenderOptions, overlay_path: str) -> Doc:
    """Argo CD syncs the overlay; pruning removes the Deployment of a version that left the state."""
    name = f"{request.model}-{request.environment}"
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": name,
            "namespace": options.argocd_namespace,
            "labels": model_labels(request.model),
        },
        "spec": {
            "project": options.argocd_project,
            "source": {
                "repoURL": options.repo_url,
                "targetRevision": options.target_revision,
                "path": overlay_path,
            },
            "destination": {"server": options.destination_server, "namespace": namespace(request, options)},
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["CreateNamespace=true"],
            },
        },
    }


def kustomization(
    resources: list[str], namespace_name: str | None = None, patches: list[Doc] | None = None
) -> Doc:
    doc: Doc = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    if namespace_name:
        doc["namespace"] = namespace_name
    doc["resources"] = resources
    if patches:
        doc["patches"] = patches
    return doc
