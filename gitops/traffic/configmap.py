"""Traffic mode `configmap`: one inference Deployment serves every version; a ConfigMap holds weights.

One GPU holds baseline and canary; the server reloads the routing file when the kubelet updates the
mounted ConfigMap, so a traffic step changes no pod.
"""

from __future__ import annotations

from canaryflow.kernel.contracts.routing import ROUTING_FILE_KEY, RoutingConfig
from gitops import resources
from gitops.model import RenderRequest
from gitops.resources import Doc
from gitops.settings import RenderOptions
from gitops.yamlio import dump_yaml

ROUTING_MOUNT = "/etc/canaryflow"
ROUTING_CONFIGMAP_FILE = "routing-configmap.yaml"


def routing_configmap_name(model: str) -> str:
    return f"{model}-routing"


class ConfigMapTraffic:
    def overlay_documents(
        self, request: RenderRequest, routing: RoutingConfig, options: RenderOptions
    ) -> dict[str, Doc]:
        labels = resources.model_labels(request.model)
        configmap_name = routing_configmap_name(request.model)
        deployment = resources.inference_deployment(
            name=request.model,
            labels=labels,
            selector={"app.kubernetes.io/name": request.model},
            args=[
                "serve",
                "--routing-file",
                f"{ROUTING_MOUNT}/{ROUTING_FILE_KEY}",
                "--host",
                "0.0.0.0",
                "--port",
                str(options.port),
            ],
            options=options,
            volumes=[{"name": "routing", "configMap": {"name": configmap_name}}],
            volume_mounts=[{"name": "routing", "mountPath": ROUTING_MOUNT, "readOnly": True}],
        )
        configmap: Doc = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": configmap_name, "labels": labels},
            "data": {ROUTING_FILE_KEY: dump_yaml(routing.model_dump(mode="json"))},
        }
        return {"deployment.yaml": deployment, ROUTING_CONFIGMAP_FILE: configmap}
