"""What `canaryflow install render` is asked for, and the names every rendered object agrees on.

One place for the names (service account, Secret, ConfigMap, ports, paths) so that the Deployment, its
Service, the RBAC and the NetworkPolicy cannot drift apart; the options are what differs per cluster.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from canaryflow.kernel.guarded_input import Hostname, UrlText

# A DNS-1123 label: what Kubernetes accepts as a namespace name.
_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"

CONTROLLER = "canaryflow-controller"
CONFIG_MAP = "canaryflow-config"
SECRET = "canaryflow-secrets"
STATE_CLAIM = "canaryflow-controller-state"
PORT = 8088
STATE_DIR = "/var/lib/canaryflow"
PART_OF = {"app.kubernetes.io/part-of": "canaryflow", "app.kubernetes.io/managed-by": "canaryflow-install"}
SELECTOR = {"app.kubernetes.io/name": CONTROLLER}

# Keys of the `canaryflow-secrets` Secret the controller reads (each optional: an absent key leaves the
# setting unset). The Secret is created by the operator (docs/install.md), never rendered: a secret
# value has no place in a manifest committed to git. The workflow pods read the same Secret whole.
CONTROLLER_SECRET_KEYS = (
    "CANARYFLOW_CONTROLLER_MLFLOW_WEBHOOK_SECRET",
    "CANARYFLOW_CONTROLLER_DATABRICKS_WEBHOOK_SECRET",
    "CANARYFLOW_CONTROLLER_GITHUB_WEBHOOK_SECRET",
    "CANARYFLOW_CONTROLLER_API_TOKEN",
    # The console's login (docs/console.md): the session cookies' key, the OIDC client's secret, and
    # API tokens for automation (a JSON object).
    "CANARYFLOW_CONTROLLER_AUTH__SESSION_SECRET",
    "CANARYFLOW_CONTROLLER_AUTH__OIDC__CLIENT_SECRET",
    "CANARYFLOW_CONTROLLER_AUTH__TOKENS",
    "CANARYFLOW_GITOPS_GITHUB_TOKEN",
    "CANARYFLOW_NOTIFY_URLS",
    "CANARYFLOW_NOTIFY_CLOUDEVENTS_URL",
    # The state several replicas share (postgresql://...); required when replicas > 1.
    "CANARYFLOW_CONTROLLER_DATABASE_URL",
)
DATABASE_URL_KEY = "CANARYFLOW_CONTROLLER_DATABASE_URL"
LEADER_ROLE = "canaryflow-controller-leader"


class InstallOptions(BaseModel):
    """Where canaryflow runs and what it talks to; every field has a default that fits a cluster set up
    as docs/install.md describes (Argo Workflows in `argo`, MLflow in `mlflow`, Prometheus Operator in
    `monitoring`, a Gateway named `inference-gateway` in `gateway`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(default="canaryflow", pattern=_LABEL, max_length=63)
    with_inference: bool = False
    inference_namespace: str = Field(default="production", pattern=_LABEL, max_length=63)
    environment: str = Field(default="production", pattern=_LABEL, max_length=63)
    policy: str = Field(default="default", min_length=1)
    image: str = Field(default="ghcr.io/canaryflow/canaryflow:0.1.0", min_length=1)
    inference_image: str = Field(default="ghcr.io/canaryflow/canaryflow-inference:0.1.0-cuda", min_length=1)
    argo_server_url: UrlText = "https://argo-server.argo.svc:2746"
    mlflow_url: UrlText = "http://mlflow.mlflow.svc:5000"
    prometheus_url: UrlText = "http://prometheus-operated.monitoring.svc:9090"
    gitops_repo_url: UrlText = Field(default="", description="the GitOps repo the rollouts commit to")
    github_repo: str = Field(default="", description="owner/name: enables the pull-request approval gate")
    gateway_name: str = "inference-gateway"
    gateway_namespace: str = Field(default="gateway", pattern=_LABEL)
    webhook_hostname: Hostname | None = Field(default=None, description="HTTPRoute hostname of /webhooks")
    monitoring_namespace: str = Field(default="monitoring", pattern=_LABEL)
    monitor_labels: dict[str, str] = Field(
        default_factory=dict, description="labels the Prometheus' serviceMonitorSelector/ruleSelector wants"
    )
    argocd_namespace: str = Field(default="argocd", pattern=_LABEL)
    storage: str = Field(default="1Gi", pattern=_QUANTITY)
    storage_class: str | None = None
    replicas: int = Field(
        default=1,
        ge=1,
        le=20,
        description="controller replicas; above 1 they share the PostgreSQL database the Secret's "
        "CANARYFLOW_CONTROLLER_DATABASE_URL names, one leading (a coordination.k8s.io Lease)",
    )
    shards: int = Field(
        default=1, ge=1, le=1024, description="models partitioned across the replicas (needs replicas > 1)"
    )

    @property
    def highly_available(self) -> bool:
        return self.replicas > 1

    @field_validator("shards")
    @classmethod
    def _shards_need_replicas(cls, shards: int, info: ValidationInfo) -> int:
        replicas = info.data.get("replicas", 1)
        if shards > 1 and replicas < 2:
            raise ValueError(f"{shards} shards need replicas above 1, got {replicas}")
        return shards
