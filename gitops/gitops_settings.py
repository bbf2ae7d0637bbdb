"""Settings of the GitOps adapter: where the repo lives, who commits, what the manifests look like.

Everything a manifest depends on is here, so that rendering is a pure function of (request, settings)
and a re-run with the same settings commits nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from canaryflow.kernel.component_settings import ComponentSettings
from canaryflow.kernel.contracts.traffic import TrafficMode
from canaryflow.kernel.guarded_input import UrlText

# A Kubernetes resource quantity ("500m", "8Gi"); the API schemas leave it a free string.
_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"


class Toleration(BaseModel):
    """A pod toleration, as Kubernetes spells it (so that GPU nodes' taints can be tolerated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class RenderOptions(BaseModel):
    """What the manifests are made of besides the model, versions and weight; part of the settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = Field(default="ghcr.io/canaryflow/canaryflow:0.1.0", min_length=1)
    replicas: int = Field(default=1, ge=1, le=1000)
    gpu_resource: str = "nvidia.com/gpu"
    gpu_count: int = Field(default=1, ge=0, le=16)
    cpu_request: str = Field(default="2", pattern=_QUANTITY)
    memory_request: str = Field(default="8Gi", pattern=_QUANTITY)
    memory_limit: str = Field(default="16Gi", pattern=_QUANTITY)
    node_selector: dict[str, str] = Field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list[Toleration] = Field(
        default_factory=lambda: [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]
    )
    port: int = Field(default=8000, ge=1, le=65535)
    tracking_uri: str = Field(default="http://mlflow.mlflow.svc:5000", description="MLflow, seen from pods")
    registered_models: dict[str, str] = Field(
        default_factory=dict, description="model -> registered model name, where they differ"
    )
    namespace: str | None = Field(default=None, description="target namespace; default: the environment")
    gateway_name: str = "inference-gateway"
    gateway_namespace: str = "gateway"
    shadow_sample_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    canary_header_routing: bool = Field(
        default=False, description="istio: requests with header `x-canary: always` go to the canary"
    )
    istio_gateways: list[str] = Field(
        default_factory=list, description="istio: Gateways the VirtualService binds besides the mesh"
    )
    istio_hosts: list[str] = Field(
        default_factory=list, description="istio: hosts the VirtualService serves besides the model Service"
    )
    repo_url: UrlText = Field(default="", description="the GitOps repo as Argo CD reads it")
    target_revision: str = "main"
    argocd_namespace: str = "argocd"
    argocd_project: str = "default"
    destination_server: str = "https://kubernetes.default.svc"
    scrape_interval: str = "15s"
    downloader_image: str = Field(
        default="ghcr.io/mlflow/mlflow:v3.17.2",
        min_length=1,
        description="serving profiles other than canaryflow: the image whose `mlflow artifacts download` "
        "puts a version's artifacts on the pod's disk",
    )
    router_image: str = Field(
        default="nginx:1.27-alpine",
        min_length=1,
        description="traffic mode configmap with a server other than canaryflow: the weighted proxy",
    )


class GitOpsSettings(ComponentSettings):
    """Section `gitops` / env prefix CANARYFLOW_GITOPS_."""

    section: ClassVar[str] = "gitops"

    remote_url: str = Field(default="", description="the repo pushed to: a path, ssh or https URL")
    branch: str = Field(default="main", pattern=r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$", max_length=200)
    workdir: Path = Path(".canaryflow/gitops")
    author_name: str = "canaryflow"
    author_email: str = "canaryflow@localhost"
    token: SecretStr | None = None
    token_username: str = "x-access-token"
    ssh_key_path: Path | None = None
    push_attempts: int = Field(default=6, ge=1, le=50)
    push_backoff_s: float = Field(default=0.2, ge=0.0, le=30.0)
    traffic_mode: TrafficMode = "configmap"
    kubernetes_version: str = "1.33"
    schemas_dir: Path | None = Field(default=None, description="CRD schemas; default: the packaged copies")
    render: RenderOptions = Field(default_factory=RenderOptions)
    github_url: str = Field(default="https://github.com", description="github.com or a GitHub Enterprise URL")
    github_repo: str = Field(default="", description="owner/name of the GitOps repo on GitHub")
    github_token: SecretStr | None = None
    github_merge_method: Literal["merge", "squash", "rebase"] = "merge"

    def render_options(self) -> RenderOptions:
        """The render options, with Argo CD pointed at the pushed repo unless told otherwise."""
        updates: dict[str, object] = {"target_revision": self.branch}
        if not self.render.repo_url:
            updates["repo_url"] = self.remote_url
        return self.render.model_copy(update=updates)
