"""What the two KServe routers share: the predictor running the serving profile's server, the PodMonitor
that scrapes it, and the rollout state declared in git.

With the default profile the predictor serves one version from its exact registry URI (`canaryflow
serve --model-uri models:/<model>/<N>`); the server labels its metrics with the model and version, so
the metric contract (`canaryflow.kernel.contracts.metrics`) holds on KServe unchanged. Other profiles
get the version's artifacts from KServe (`storageUri`, `gitops.profiles`). KServe copies an
InferenceService's labels and annotations onto its pods (and, in Serverless mode, onto each Knative
revision), so only labels that never change between steps go there: a role label would restart the
pods just judged healthy at promotion. The roles and weights live in the rollout-state ConfigMap (the
routing file `canaryflow serve --routing-file` reads), which is also what a checkout reads back.
"""

from __future__ import annotations

from pathlib import Path

from canaryflow.kernel.contracts.routing import ROUTING_FILE_KEY, RoutedVersion, RoutingConfig
from gitops import resources
from gitops.gitops_settings import RenderOptions
from gitops.model import RenderRequest
from gitops.profiles import Server, workload
from gitops.profiles.kserve_runtime import check_storage_uri
from gitops.resources import Doc
from gitops.yamlio import dump_yaml, load_yaml

ISVC_API_VERSION = "serving.kserve.io/v1beta1"
ISVC_PLURAL = "inferenceservices"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
PREDICTOR_PORT = 8080  # KServe's port for a custom predictor container
STATE_FILE = "rollout-state.yaml"
PODMONITOR_FILE = "podmonitor-predictor.yaml"
ISVC_CRD = "inferenceservices.serving.kserve.io"
STORAGE_URI_ENV = "STORAGE_URI"  # on a custom container, KServe injects its storage initializer for it


def predictor(request: RenderRequest, routed: RoutedVersion, options: RenderOptions, raw: bool) -> Doc:
    """`spec.predictor` serving one version at least `replicas` times: the profile's server as a custom
    container (its artifacts fetched by KServe's storage initializer from `STORAGE_URI`), or, for a
    ServingRuntime profile, a `model` naming the format and the `storageUri`. Knative (`raw` False)
    allows a container one port, so a separate metrics port is declared in RawDeployment mode only."""
    server = workload.server_for(request, routed, options, PREDICTOR_PORT, kserve=True)
    spec: Doc = {"minReplicas": options.replicas, "labels": {resources.VERSION_LABEL: routed.version}}
    if options.node_selector:
        spec["nodeSelector"] = dict(sorted(options.node_selector.items()))
    if options.tolerations:
        spec["tolerations"] = [t.model_dump(exclude_none=True) for t in options.tolerations]
    if server.runtime_model is not None:
        spec["model"] = {**server.runtime_model, "resources": resources.container_resources(options, {})}
        return spec
    env = [{"name": name, "value": value} for name, value in server.env]
    if server.artifacts != "registry":
        source = check_storage_uri(
            workload.version_ref(request, routed).source, request.model, routed.version
        )
        env.append({"name": STORAGE_URI_ENV, "value": source})
    ports = [{"containerPort": server.port, "protocol": "TCP"}]
    if raw and server.metrics_port is not None:
        ports.append({"containerPort": server.metrics_port, "protocol": "TCP"})
    container: Doc = {"name": "kserve-container", "image": server.image}
    if server.command:
        container["command"] = list(server.command)
    container["args"] = list(server.args)
    container["env"] = env
    container["ports"] = ports
    container["resources"] = resources.container_resources(options, server.resources)
    container["readinessProbe"] = {
        "httpGet": {"path": server.readiness_path, "port": server.port},
        "periodSeconds": 5,
    }
    spec["containers"] = [container]
    return spec


def inference_service(name: str, labels: dict[str, str], mode: str, predictor_spec: Doc) -> Doc:
    return {
        "apiVersion": ISVC_API_VERSION,
        "kind": "InferenceService",
        "metadata": {"name": name, "labels": labels, "annotations": {DEPLOYMENT_MODE: mode}},
        "spec": {"predictor": predictor_spec},
    }


# Knative's queue-proxy serves its request metrics (the `knative` metric provider) on this port name.
QUEUE_PROXY_METRICS_PORT = "http-usermetric"


def pod_monitor(
    model: str, options: RenderOptions, server: Server | None = None, queue_proxy: bool = False
) -> Doc:
    """Scrapes the predictor pods of every version by port number: Knative allows only its own port names
    (`http1`, `h2c`), so the base PodMonitor's port name `http` cannot select them. `queue_proxy`
    (serverless): also the queue-proxy's request metrics, which see every request whatever the runtime."""
    port = PREDICTOR_PORT if server is None else (server.metrics_port or server.port)
    path = "/metrics" if server is None else server.metrics_path
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": f"{model}-predictor", "labels": resources.model_labels(model)},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": model, "component": "predictor"}},
            "podMetricsEndpoints": [
                {
                    "portNumber": port,
                    "path": path,
                    "interval": options.scrape_interval,
                    "relabelings": resources.arm_relabelings(),
                },
                *(
                    [
                        {
                            "port": QUEUE_PROXY_METRICS_PORT,
                            "path": "/metrics",
                            "interval": options.scrape_interval,
                            "relabelings": resources.arm_relabelings(),
                        }
                    ]
                    if queue_proxy
                    else []
                ),
            ],
        },
    }


def state_configmap(model: str, routing: RoutingConfig) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{model}-rollout-state", "labels": resources.model_labels(model)},
        "data": {ROUTING_FILE_KEY: dump_yaml(routing.model_dump(mode="json"))},
    }


def routing_from_state(overlay: Path) -> RoutingConfig | None:
    path = overlay / STATE_FILE
    if not path.exists():
        return None
    return RoutingConfig.model_validate(load_yaml(load_yaml(path.read_text())["data"][ROUTING_FILE_KEY]))
