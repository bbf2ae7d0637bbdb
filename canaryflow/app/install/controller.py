"""The controller's own objects: its settings ConfigMap, Deployment, state volume and Service.

The controller keeps its rollouts in one SQLite file and holds an exclusive lock on it (a second loop
would run every step twice), so the Deployment has one replica and the `Recreate` strategy: the old pod
is gone before the new one opens the file. The root filesystem is read-only; the only writable places
are the state volume and an emptyDir at /tmp (git and the HTTP clients write temporary files there).
"""

from __future__ import annotations

from typing import Any

from canaryflow.app.install.options import (
    CONFIG_MAP,
    CONTROLLER,
    CONTROLLER_SECRET_KEYS,
    DATABASE_URL_KEY,
    PART_OF,
    PORT,
    SECRET,
    SELECTOR,
    STATE_CLAIM,
    STATE_DIR,
    InstallOptions,
)
from workflows.argo.install import CONTROLLER_ACCOUNT

RUN_AS = 10001
# What the controller's container runs: the image's entry point is `canaryflow`, these are its words.
COMMAND = ["canaryflow"]
ARGS = ["controller", "serve", "--log-level", "INFO"]
HEALTH_PATH = "/healthz"


def metadata(name: str, namespace: str, **labels: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": {**SELECTOR, **PART_OF, **labels}}


def settings_env(options: InstallOptions) -> dict[str, str]:
    """The non-secret settings of the controller and of the workflow pods, as CANARYFLOW_* variables.

    One ConfigMap serves both: the rendered WorkflowTemplate's pods read it whole (`envFrom`), so the
    step that commits manifests and the controller that reconciles agree on every setting.
    """
    env = {
        "CANARYFLOW_CONTROLLER_HOST": "0.0.0.0",
        "CANARYFLOW_CONTROLLER_PORT": str(PORT),
        "CANARYFLOW_CONTROLLER_DB_PATH": f"{STATE_DIR}/controller.db",
        "CANARYFLOW_CONTROLLER_REGISTRY_TRACKING_URI": options.mlflow_url,
        "CANARYFLOW_WORKFLOWS_ENGINE": "argo",
        "CANARYFLOW_WORKFLOWS_ARGO_HOST": options.argo_server_url,
        "CANARYFLOW_WORKFLOWS_ARGO_NAMESPACE": options.namespace,
        "CANARYFLOW_WORKFLOWS_IMAGE": options.image,
        "CANARYFLOW_METRICS_BACKEND": "prometheus",
        "CANARYFLOW_METRICS_PROMETHEUS_URL": options.prometheus_url,
        "CANARYFLOW_GITOPS_WORKDIR": "/tmp/canaryflow-gitops",
        "CANARYFLOW_GITOPS_TRAFFIC_MODE": "httproute",
        "CANARYFLOW_GITOPS_RENDER__TRACKING_URI": options.mlflow_url,
        "CANARYFLOW_GITOPS_RENDER__NAMESPACE": options.inference_namespace,
        "CANARYFLOW_GITOPS_RENDER__GATEWAY_NAME": options.gateway_name,
        "CANARYFLOW_GITOPS_RENDER__GATEWAY_NAMESPACE": options.gateway_namespace,
        "CANARYFLOW_GITOPS_RENDER__ARGOCD_NAMESPACE": options.argocd_namespace,
        "HF_HUB_OFFLINE": "1",
    }
    if options.gitops_repo_url:
        env["CANARYFLOW_GITOPS_REMOTE_URL"] = options.gitops_repo_url
    if options.github_repo:
        env["CANARYFLOW_GITOPS_GITHUB_REPO"] = options.github_repo
    if options.highly_available:  # replicas on the shared database (docs/controller.md, HA)
        env["CANARYFLOW_CONTROLLER_SHARDS"] = str(options.shards)
        # One shard: a leader by a Lease in this namespace (RBAC: access.py); shards: leases in the database.
        env["CANARYFLOW_CONTROLLER_LEADER_ELECTION"] = "kubernetes" if options.shards == 1 else "database"
        env["CANARYFLOW_CONTROLLER_LEADER_LEASE_NAMESPACE"] = options.namespace
    if options.with_inference:
        # The wait-ready step reads the canary Deployment's status through the API (RBAC in access.py).
        env["CANARYFLOW_CONTROLLER_KUBERNETES__IN_CLUSTER"] = "true"
        env["CANARYFLOW_CONTROLLER_KUBERNETES__NAMESPACE"] = options.inference_namespace
    return env


def config_map(options: InstallOptions) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(CONFIG_MAP, options.namespace),
        "data": settings_env(options),
    }


def _secret_env(name: str, secret: str, key: str, optional: bool = True) -> dict[str, Any]:
    ref = {"name": secret, "key": key, "optional": optional}
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _container(options: InstallOptions) -> dict[str, Any]:
    probe = {"httpGet": {"path": HEALTH_PATH, "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 3}
    env = [
        {"name": "HOME", "value": "/tmp"},
        # Replicas without the shared database would each run every rollout: the pod does not start.
        *(
            _secret_env(key, SECRET, key, optional=not (key == DATABASE_URL_KEY and options.highly_available))
            for key in CONTROLLER_SECRET_KEYS
        ),
        # The Argo Server checks this identity's RBAC (workflows/argo/install.py) on every call: the
        # pod's projected token (re-read on every call; the kubelet rotates it), no long-lived Secret.
        {"name": "CANARYFLOW_WORKFLOWS_ARGO_TOKEN_PATH", "value": f"{ARGO_TOKEN_DIR}/token"},
    ]
    return {
        "name": "controller",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "command": COMMAND,
        "args": ARGS,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": CONFIG_MAP}}],
        "env": env,
        "resources": {
            "requests": {"cpu": "100m", "memory": "512Mi"},
            "limits": {"memory": "1Gi"},
        },
        "startupProbe": {**probe, "failureThreshold": 30, "periodSeconds": 2},
        "readinessProbe": {**probe, "failureThreshold": 3},
        "livenessProbe": {**probe, "failureThreshold": 6},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "state", "mountPath": STATE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "argo-token", "mountPath": ARGO_TOKEN_DIR, "readOnly": True},
        ],
    }


# Argo Server's client mode passes the bearer token on to the Kubernetes API as the caller's identity,
# so the token keeps the API server's own audience (none named here: the default one); it expires
# within the hour and the kubelet writes a fresh one well before, in place.
ARGO_TOKEN_DIR = "/var/run/secrets/canaryflow/argo"
ARGO_TOKEN_EXPIRY_S = 3600


def argo_token_volume() -> dict[str, Any]:
    """The controller's service-account token as a projected, rotated, short-lived volume."""
    token = {"path": "token", "expirationSeconds": ARGO_TOKEN_EXPIRY_S}
    return {"name": "argo-token", "projected": {"sources": [{"serviceAccountToken": token}]}}


def deployment(options: InstallOptions) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(CONTROLLER, options.namespace),
        "spec": {
            "replicas": options.replicas,
            # One replica owns its SQLite file: the old pod stops before the new one opens it. Replicas
            # share PostgreSQL and elect a leader, so they roll one at a time.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
            if options.highly_available
            else {"type": "Recreate"},
            "selector": {"matchLabels": dict(SELECTOR)},
            "template": {
                "metadata": {"labels": {**SELECTOR, **PART_OF}},
                "spec": {
                    "serviceAccountName": CONTROLLER_ACCOUNT,
                    # The controller calls the Argo Server with its projected token (below), never the
                    # Kubernetes API: the default token mount is off.
                    # (Replicas electing a leader by a Lease do call it: the token is mounted then.)
                    "automountServiceAccountToken": options.highly_available and options.shards == 1,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS,
                        "runAsGroup": RUN_AS,
                        "fsGroup": RUN_AS,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "terminationGracePeriodSeconds": 30,
                    "containers": [_container(options)],
                    "volumes": [
                        state_volume(options),
                        {"name": "tmp", "emptyDir": {"sizeLimit": "512Mi"}},
                        argo_token_volume(),
                    ],
                },
            },
        },
    }


def state_volume(options: InstallOptions) -> dict[str, Any]:
    """One replica: its SQLite file on a claim. Replicas: the state is in PostgreSQL; what stays local
    (the notifier's outbox, drift references) lives as long as the pod."""
    if options.highly_available:
        return {"name": "state", "emptyDir": {"sizeLimit": "256Mi"}}
    return {"name": "state", "persistentVolumeClaim": {"claimName": STATE_CLAIM}}


def state_claim(options: InstallOptions) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": options.storage}},
    }
    if options.storage_class:
        spec["storageClassName"] = options.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(STATE_CLAIM, options.namespace),
        "spec": spec,
    }


def service(options: InstallOptions) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(CONTROLLER, options.namespace),
        "spec": {
            "selector": dict(SELECTOR),
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
