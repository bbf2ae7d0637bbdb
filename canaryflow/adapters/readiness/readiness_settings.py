"""Settings of the Kubernetes readiness backend; the controller's settings embed them as `kubernetes`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class KubernetesReadinessSettings(BaseModel):
    """Where the canary Deployment lives when a cluster is configured."""

    model_config = ConfigDict(extra="forbid")

    kubeconfig: Path | None = None
    in_cluster: bool = False
    host: str | None = Field(
        default=None, description="API server URL, when neither kubeconfig nor in-cluster"
    )
    namespace: str = "default"
    deployment_template: str = Field(
        default="{model}-v{version}",
        description="name of the canary Deployment; {model}, {version} (kserve-raw: "
        "'{model}-v{version}-predictor'; empty: no Deployment, as on KServe Serverless)",
    )
