"""Traffic mode `configmap` for servers that serve one version per pod (every profile but canaryflow):
a Deployment and Service per version (as `httproute` renders them) behind an nginx proxy whose
configuration, in the routing ConfigMap beside the routing file, splits requests by the weights.

nginx's `split_clients` hashes the sticky header where a request has one (the routing file's
`sticky_header`, so one caller stays on one arm), else the request id. nginx reads its configuration at
start, so the proxy pods carry a checksum of it: a weight change rolls the proxy (stateless, never below
`replicas` ready) and leaves the inference pods alone. The overlay narrows the base Service to the proxy
pods and the base PodMonitor to the inference pods (Kustomize patches), so callers keep one address and
the metrics stay the servers' own.
"""

from __future__ import annotations

import hashlib

from canaryflow.kernel.contracts.routing import RoutingConfig
from gitops import resources
from gitops.resources import Doc
from gitops.settings import RenderOptions

COMPONENT_LABEL = "canaryflow.io/component"
ROUTER = "router"
CONFIG_KEY = "nginx.conf"
CONFIG_MOUNT = "/etc/canaryflow-router"
READY_PATH = "/canaryflow-router/ready"
CHECKSUM_ANNOTATION = "canaryflow.io/router-config-sha256"


def router_name(model: str) -> str:
    return f"{model}-router"


def nginx_config(routing: RoutingConfig, port: int) -> str:
    model = routing.model
    weighted = [(resources.version_name(model, v.version), v.weight) for v in routing.versions if v.weight]
    split = [f"        {w}% {name};" for name, w in weighted[:-1]] + [f"        * {weighted[-1][0]};"]
    header = "http_" + routing.sticky_header.lower().replace("-", "_")
    upstreams = [
        f"    upstream {name} {{ server {name}:{resources.SERVICE_PORT}; }}"
        for name in sorted(resources.version_name(model, v.version) for v in routing.versions)
    ]
    lines = [
        f"# {model}: requests split by the weights of routing.yaml (rendered by canaryflow)",
        "worker_processes auto;",
        "pid /tmp/nginx.pid;",
        "events {}",
        "http {",
        "    access_log off;",
        "    client_body_temp_path /tmp/nginx-body;",
        "    proxy_temp_path /tmp/nginx-proxy;",
        f"    map ${header} $canaryflow_split_key {{",
        '        "" $request_id;',
        f"        default ${header};",
        "    }",
        '    split_clients "${canaryflow_split_key}" $canaryflow_backend {',
        *split,
        "    }",
        *upstreams,
        "    server {",
        f"        listen {port};",
        f'        location = {READY_PATH} {{ return 200 "ready\\n"; }}',
        "        location / {",
        "            proxy_pass http://$canaryflow_backend;",
        "            proxy_http_version 1.1;",
        "            proxy_set_header Host $host;",
        "            proxy_buffering off;",
        "            proxy_read_timeout 600s;",
        "        }",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def router_deployment(model: str, configmap: str, config: str, options: RenderOptions) -> Doc:
    labels = {**resources.model_labels(model), COMPONENT_LABEL: ROUTER}
    container: Doc = {
        "name": "router",
        "image": options.router_image,
        "command": ["nginx"],
        "args": ["-c", f"{CONFIG_MOUNT}/{CONFIG_KEY}", "-g", "daemon off;"],
        "ports": [{"name": resources.HTTP_PORT_NAME, "containerPort": options.port, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "readinessProbe": {
            "httpGet": {"path": READY_PATH, "port": resources.HTTP_PORT_NAME},
            "periodSeconds": 2,
        },
        "volumeMounts": [{"name": "router-config", "mountPath": CONFIG_MOUNT, "readOnly": True}],
    }
    pod_spec: Doc = {
        "containers": [container],
        "volumes": [{"name": "router-config", "configMap": {"name": configmap}}],
    }
    doc = resources.deployment(
        name=router_name(model), labels=labels, selector=labels, pod_spec=pod_spec, options=options
    )
    checksum = hashlib.sha256(config.encode()).hexdigest()
    doc["spec"]["template"]["metadata"]["annotations"] = {CHECKSUM_ANNOTATION: checksum}
    return doc


def base_patches(model: str) -> list[Doc]:
    """Kustomize patches of the base: its Service selects the proxy pods only, its PodMonitor the
    inference pods only."""
    service = f"""apiVersion: v1
kind: Service
metadata:
  name: {model}
spec:
  selector:
    {COMPONENT_LABEL}: {ROUTER}
"""
    monitor = f"""apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: {model}
spec:
  selector:
    matchExpressions:
    - key: {COMPONENT_LABEL}
      operator: DoesNotExist
"""
    return [
        {"target": {"kind": "Service", "name": model}, "patch": service},
        {"target": {"kind": "PodMonitor", "name": model}, "patch": monitor},
    ]
