"""What the two KServe routers share: the custom predictor running canaryflow's own inference server,
the PodMonitor that scrapes it, and the rollout state declared in git.

The predictor serves one version from its exact registry URI (`canaryflow serve --model-uri
models:/<model>/<N>`); the server labels its metrics with the model and version, so the metric
contract (`canaryflow.kernel.contracts.metrics`) holds on KServe unchanged. KServe copies an
InferenceService's labels and annotations onto its pods (and, in Serverless mode, onto each Knative
revision), so only labels that never change between steps go there: a role label would restart the
pods just judged healthy at promotion. The roles and weights live in the rollout-state ConfigMap (the
routing file `canaryflow serve --routing-file` reads), which is also what a checkout reads back.
"""

from __future__ import annotations

from pathlib import Path

from canaryflow.kernel.contracts.routing import ROUTING_FILE_KEY, RoutedVersion, RoutingConfig
from gitops import resources
from gitops.resources import Doc
from gitops.settings import RenderOptions
from gitops.yamlio import dump_yaml, load_yaml

ISVC_API_VERSION = "serving.kserve.io/v1beta1"
ISVC_PLURAL = "inferenceservices"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
PREDICTOR_PORT = 8080  # KServe's port for a custom predictor container
STATE_FILE = "rollout-state.yaml"
PODMONITOR_FILE = "podmonitor-predictor.yaml"
ISVC_CRD = "inferenceservices.serving.kserve.io"


def predictor(model: str, routed: RoutedVersion, options: RenderOptions) -> Doc:
    """`spec.predictor` serving one version: a custom container, GPU resources, at least `replicas`."""
    gpu = {options.gpu_resource: str(options.gpu_count)} if options.gpu_count else {}
    container: Doc = {
        "name": "kserve-container",
        "image": options.image,
        "command": ["canaryflow"],
        "args": resources.serve_args(routed.uri, model, PREDICTOR_PORT),
        "env": [
            {"name": "MLFLOW_TRACKING_URI", "value": options.tracking_uri},
            {"name": "HF_HUB_OFFLINE", "value": "1"},
        ],
        "ports": [{"containerPort": PREDICTOR_PORT, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": options.cpu_request, "memory": options.memory_request, **gpu},
            "limits": {"memory": options.memory_limit, **gpu},
        },
        "readinessProbe": {"httpGet": {"path": "/ready", "port": PREDICTOR_PORT}, "periodSeconds": 5},
    }
    spec: Doc = {"minReplicas": options.replicas, "labels": {resources.VERSION_LABEL: routed.version}}
    if options.node_selector:
        spec["nodeSelector"] = dict(sorted(options.node_selector.items()))
    if options.tolerations:
        spec["tolerations"] = [t.model_dump(exclude_none=True) for t in options.tolerations]
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


def pod_monitor(model: str, options: RenderOptions, queue_proxy: bool = False) -> Doc:
    """Scrapes the predictor pods of every version by port number: Knative allows only its own port names
    (`http1`, `h2c`), so the base PodMonitor's port name `http` cannot select them. `queue_proxy`
    (serverless): also the queue-proxy's request metrics, which see every request whatever the runtime."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": f"{model}-predictor", "labels": resources.model_labels(model)},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": model, "component": "predictor"}},
            "podMetricsEndpoints": [
                {
                    "portNumber": PREDICTOR_PORT,
                    "path": "/metrics",
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
