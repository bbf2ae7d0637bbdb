"""Settings of the workflow engines: which engine runs rollouts, how to reach Argo, what image steps run."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from canaryflow.kernel.component_settings import ComponentSettings


class WorkflowSettings(ComponentSettings):
    """`CANARYFLOW_WORKFLOWS_*` or the `workflows:` section of the config file."""

    section: ClassVar[str] = "workflows"

    engine: Literal["local", "argo"] = "local"
    # Argo Server (what `argo server` serves; the UI lives on the same address).
    argo_host: str = "https://localhost:2746"
    argo_namespace: str = "argo"
    argo_token: SecretStr | None = None
    argo_token_path: str | None = Field(
        default=None,
        description="file holding the token, re-read on every call: the pod's projected service-account "
        "token, which the kubelet rotates (`install render` mounts it); used when argo_token is unset",
    )
    argo_verify_tls: bool = True
    argo_ca_bundle: str | None = Field(default=None, description="CA file for a private Argo Server cert")
    argo_timeout_s: float = Field(default=10.0, gt=0, le=600, description="per Argo Server call")
    # What the rendered templates run.
    image: str = "ghcr.io/canaryflow/canaryflow:0.1.0"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    service_account: str = "canaryflow-workflow"
    config_map: str = "canaryflow-config"
    secret: str = "canaryflow-secrets"
    poll_interval_s: float = Field(default=10.0, gt=0)
