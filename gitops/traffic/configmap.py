"""Traffic mode `configmap`: one inference Deployment serves every version; a ConfigMap holds weights.

One GPU holds baseline and canary; the server reloads the routing file when the kubelet updates the
mounted ConfigMap, so a traffic step changes no pod. A server that serves one version per pod (every
serving profile but canaryflow) gets a Deployment per version behind an nginx proxy whose configuration
the same ConfigMap carries (gitops.traffic.proxy).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import gitops.traffic.versions as versions
from canaryflow.kernel.contracts.routing import ROUTING_FILE_KEY, RoutingConfig
from gitops import resources
from gitops.model import RenderRequest
from gitops.profiles import workload
from gitops.resources import Doc
from gitops.settings import RenderOptions
from gitops.traffic import proxy
from gitops.traffic.base import ClusterReader
from gitops.yamlio import dump_yaml, load_yaml

ROUTING_MOUNT = "/etc/canaryflow"
ROUTING_CONFIGMAP_FILE = "routing-configmap.yaml"
ROUTER_FILE = "deployment-router.yaml"


def routing_configmap_name(model: str) -> str:
    return f"{model}-routing"


class ConfigMapTraffic:
    mode: ClassVar[str] = "configmap"
    crds: ClassVar[tuple[str, ...]] = ()
    live_objects: ClassVar[tuple[tuple[str, str], ...]] = (("", "configmaps"),)

    def overlay_documents(
        self, request: RenderRequest, routing: RoutingConfig, options: RenderOptions
    ) -> dict[str, Doc]:
        labels = resources.model_labels(request.model)
        configmap_name = routing_configmap_name(request.model)
        server = workload.server_for(request, routing.versions[0], options, options.port)
        if not server.multi_version:
            return self._proxied(request, routing, options)
        routed_args = ["serve", "--routing-file", f"{ROUTING_MOUNT}/{ROUTING_FILE_KEY}"]
        deployment = resources.inference_deployment(
            name=request.model,
            labels=labels,
            selector={"app.kubernetes.io/name": request.model},
            server=replace(server, args=[*routed_args, "--host", "0.0.0.0", "--port", str(options.port)]),
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

    def _proxied(
        self, request: RenderRequest, routing: RoutingConfig, options: RenderOptions
    ) -> dict[str, Doc]:
        """A server of one version per pod: per-version pods behind an nginx proxy (gitops.traffic.proxy)."""
        if routing.shadow.enabled:
            raise ValueError(
                f"shadow_sample_rate: mirroring is done by canaryflow's own server or istio, "
                f"not by the configmap proxy of profile {request.serving.profile}"
            )
        docs = versions.version_workloads(request, routing, options)
        config = proxy.nginx_config(routing, options.port)
        name = routing_configmap_name(request.model)
        docs[ROUTING_CONFIGMAP_FILE] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "labels": resources.model_labels(request.model)},
            "data": {ROUTING_FILE_KEY: dump_yaml(routing.model_dump(mode="json")), proxy.CONFIG_KEY: config},
        }
        docs[ROUTER_FILE] = proxy.router_deployment(request.model, name, config, options)
        docs[resources.PATCHES_KEY] = {"patches": proxy.base_patches(request.model)}
        return docs

    def routing_from_overlay(self, overlay: Path, model: str) -> RoutingConfig | None:
        path = overlay / ROUTING_CONFIGMAP_FILE
        if not path.exists():
            return None
        return RoutingConfig.model_validate(load_yaml(load_yaml(path.read_text())["data"][ROUTING_FILE_KEY]))

    def live_weights(self, cluster: ClusterReader, namespace: str, model: str) -> dict[str, int]:
        configmap = cluster.get_object("v1", "configmaps", namespace, routing_configmap_name(model))
        if configmap is None:
            return {}
        routing = RoutingConfig.model_validate(load_yaml(configmap["data"][ROUTING_FILE_KEY]))
        return {routed.version: routed.weight for routed in routing.versions}
