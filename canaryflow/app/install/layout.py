"""The Kustomize tree `canaryflow install render` writes: a base and one overlay per hardware variant.

    base/             controller, its settings, RBAC, Argo template, route, scrape, alerts, dashboards
    overlays/gpu/     inference Deployments the rollouts render ask for a GPU and run the CUDA image
    overlays/cpu/     ... run on CPU nodes with the CPU image (no GPU request, no GPU node selector)

The overlays differ only in the settings the rollouts' GitOps render reads (a patch of the ConfigMap):
the inference Deployments themselves are committed to the GitOps repo by each rollout, not installed.
Namespaces are set on every object (the tree spans canaryflow's, the inference and Argo CD's), so no
overlay may use Kustomize's `namespace:` transformer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from canaryflow.app.install import access, alerts, controller, dashboards, exposure
from canaryflow.app.install.options import CONFIG_MAP, InstallOptions

KUSTOMIZATION = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
OVERLAYS = ("gpu", "cpu")


def _dump(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)


def base_documents(options: InstallOptions) -> dict[str, list[dict[str, Any]]]:
    """File name -> the objects it holds, in the order `kubectl apply` should meet them."""
    files: dict[str, list[dict[str, Any]]] = {
        "namespace.yaml": [exposure.namespace(options.namespace)],
        "config.yaml": [controller.config_map(options)],
        "argo.yaml": access.argo_pieces(options),
        "deployment.yaml": [controller.deployment(options)],
        "service.yaml": [controller.service(options)],
        "networkpolicy.yaml": [access.network_policy(options)],
        "httproute.yaml": [exposure.webhook_route(options)],
        "servicemonitor.yaml": [exposure.service_monitor(options)],
        "alerts.yaml": [alerts.prometheus_rule(options)],
        "dashboards.yaml": dashboards.dashboard_config_maps(options),
    }
    if not options.highly_available:  # one replica's SQLite file
        files = {"state.yaml": [controller.state_claim(options)], **files}
    elif options.shards == 1:  # replicas electing a leader by a Lease
        files["leader.yaml"] = access.leader_access(options)
    if options.with_inference:
        inference = [exposure.namespace(options.inference_namespace), *access.readiness_access(options)]
        if options.gitops_repo_url:
            inference.append(exposure.apps_application(options))
        files["inference.yaml"] = inference
    return files


def overlay_settings(options: InstallOptions, variant: str) -> dict[str, str]:
    """The GitOps render settings of one variant (RenderOptions fields, as CANARYFLOW_* variables)."""
    prefix = "CANARYFLOW_GITOPS_RENDER__"
    if variant == "gpu":
        return {
            f"{prefix}IMAGE": options.inference_image,
            f"{prefix}GPU_COUNT": "1",
            f"{prefix}NODE_SELECTOR": json.dumps({"nvidia.com/gpu.present": "true"}),
            f"{prefix}TOLERATIONS": json.dumps(
                [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
            ),
        }
    return {
        f"{prefix}IMAGE": options.image,
        f"{prefix}GPU_COUNT": "0",
        f"{prefix}NODE_SELECTOR": "{}",
        f"{prefix}TOLERATIONS": "[]",
        f"{prefix}CPU_REQUEST": "2",
        f"{prefix}MEMORY_REQUEST": "4Gi",
        f"{prefix}MEMORY_LIMIT": "8Gi",
    }


def render(options: InstallOptions) -> dict[str, str]:
    """Relative path -> file text for the whole tree; pure (no I/O), so tests and `--out` agree."""
    out: dict[str, str] = {}
    documents = base_documents(options)
    for name, docs in documents.items():
        out[f"base/{name}"] = _dump(docs)
    out["base/kustomization.yaml"] = _dump([{**KUSTOMIZATION, "resources": list(documents)}])
    for variant in OVERLAYS:
        patch = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": CONFIG_MAP, "namespace": options.namespace},
            "data": overlay_settings(options, variant),
        }
        out[f"overlays/{variant}/render-settings.yaml"] = _dump([patch])
        out[f"overlays/{variant}/kustomization.yaml"] = _dump(
            [{**KUSTOMIZATION, "resources": ["../../base"], "patches": [{"path": "render-settings.yaml"}]}]
        )
    return out


def write(files: dict[str, str], out_dir: Path) -> list[Path]:
    """Writes every file (each one whole: written beside, then renamed) and returns their paths."""
    written: list[Path] = []
    for relative, text in files.items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text)
        partial.replace(path)
        written.append(path)
    return written
