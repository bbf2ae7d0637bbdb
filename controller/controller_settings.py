"""Settings of the controller service (section `controller`, env prefix `CANARYFLOW_CONTROLLER_`).

Which registry change starts a rollout is configured per model, because teams differ: some promote
with aliases (`challenger` set -> canary against `champion`), some still move legacy stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from canaryflow.adapters.readiness.readiness_settings import KubernetesReadinessSettings
from canaryflow.adapters.registry.factory import REGISTRIES
from canaryflow.kernel.component_settings import ComponentSettings
from controller.auth.settings import AuthSettings
from controller.console.settings import ConsoleSettings


class TriggerRule(BaseModel):
    """One registry change that starts a rollout, and where its baseline comes from.

    `kind="alias"`: the alias `alias` set on a version makes it the canary; the baseline is the version
    holding `baseline_alias`. `kind="stage"`: a transition to `stage` makes it the canary; the baseline is
    the version holding `baseline_alias` (registries that still use stages usually mirror it as an alias)
    or, failing that, the event's `from` version is not known and the rollout is not started.
    `kind="tag"`: a version tag `tag_key` set to `tag_value` makes it the canary.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["alias", "stage", "tag"] = "alias"
    alias: str = "challenger"
    stage: str = "Production"
    tag_key: str = "canaryflow.canary"
    tag_value: str = "true"
    baseline_alias: str = "champion"
    policy: str = "default"
    environment: str = "production"


DEFAULT_TRIGGERS: list[TriggerRule] = [TriggerRule(kind="alias"), TriggerRule(kind="stage")]


class DriftMonitorSettings(BaseModel):
    """Drift monitoring of champions (docs/monitoring.md): off unless `enabled`."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    policy: str = Field(default="default", description="drift policy: a shipped name or a YAML file")
    backend: str = Field(
        default="local", description="prediction-log reader (local: JSONL and/or Parquet files)"
    )
    location: Path = Field(default=Path("predictions"), description="the servers' --prediction-log-dir")
    models: list[str] = Field(
        default_factory=list, description="also watch these models' registry champion (no rollout needed)"
    )
    champion_alias: str = "champion"
    reference_files: dict[str, Path] = Field(
        default_factory=dict, description="per model: a prediction-log file (.jsonl or .parquet) as reference"
    )
    interval_s: float = Field(default=5.0, gt=0, description="how often new records are read")
    tag_registry: bool = Field(default=True, description="set canaryflow.drift on the model version")


class ControllerSettings(ComponentSettings):
    section: ClassVar[str] = "controller"

    host: str = "127.0.0.1"
    port: int = Field(default=8088, ge=0, le=65535)
    db_path: Path = Path("canaryflow-controller.db")
    # High availability (docs/controller.md): replicas sharing a PostgreSQL database, one leader.
    database_url: SecretStr | None = Field(
        default=None,
        description="state shared by several replicas: postgresql://user:password@host:5432/db; unset: "
        "SQLite at db_path (one replica). A secret: env CANARYFLOW_CONTROLLER_DATABASE_URL",
    )
    leader_ttl_s: float = Field(
        default=15.0, gt=0, le=600, description="a leader silent this long is replaced by another replica"
    )
    leader_renew_s: float = Field(default=3.0, gt=0, le=300, description="how often the leader renews")
    leader_election: Literal["database", "kubernetes"] = Field(
        default="database",
        description="with database_url: a lease row in that database, or a coordination.k8s.io/v1 Lease "
        "(in the `kubernetes` settings' namespace and cluster)",
    )
    leader_lease_name: str = Field(default="canaryflow-controller", min_length=1, max_length=253)
    leader_lease_namespace: str | None = Field(
        default=None, description="the Lease's namespace (default: the `kubernetes` settings' namespace)"
    )
    shards: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="with database_url: models partitioned into this many shards, each leased by one "
        "replica (controller/sharding.py); 1: one leader reconciles every model",
    )

    mlflow_webhook_secret: SecretStr | None = None
    databricks_webhook_secret: SecretStr | None = None
    github_webhook_secret: SecretStr | None = None
    webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="secrets of further webhook sources, by their `secret_setting` (env: a JSON object)",
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="bearer token of the API's changing endpoints (PUT /models/{name}/drift/reference); "
        "unset: they answer 403. A secret: env CANARYFLOW_CONTROLLER_API_TOKEN, never the YAML file",
    )
    timestamp_tolerance_s: float = Field(default=300.0, gt=0)
    approval_max_age_s: float = Field(
        default=3600.0,
        gt=0,
        description="a GitHub review (or merge) delivered longer after it happened is refused as a replay",
    )
    max_body_bytes: int = Field(default=1_000_000, gt=0)
    # Slow and greedy clients (inference.connection_guard): headers, then body, within these; at most
    # this many connections open from one address (a registry sending 200 deliveries at once fits).
    header_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    max_connections_per_client: int = Field(default=256, ge=1)

    triggers: dict[str, list[TriggerRule]] = Field(
        default_factory=dict, description="per model name; '*' applies to every model not listed"
    )
    registry_tracking_uri: str | None = None
    registry_backend: str = Field(default="mlflow", description="a backend of canaryflow.adapters.registry")

    reconcile_interval_s: float = Field(default=2.0, gt=0)
    reconcile_workers: int = Field(
        default=8, ge=0, le=256, description="models reconciled at once; 0: all on the loop's thread"
    )
    tick_deadline_s: float = Field(
        default=30.0, gt=0, description="a tick waits this long for its jobs; a slower one runs on alone"
    )
    dependency_timeout_s: float = Field(
        default=10.0, gt=0, le=600, description="per call to MLflow (its client retries once at most)"
    )

    kubernetes: KubernetesReadinessSettings | None = None
    inference_url: str | None = Field(default=None, description="embedded readiness: GET {url}/ready")
    drift: DriftMonitorSettings = Field(default_factory=DriftMonitorSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)  # who may see and act (controller/auth)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)  # the pages (controller/console)

    @model_validator(mode="after")
    def _renew_within_ttl(self) -> ControllerSettings:
        if self.leader_renew_s >= self.leader_ttl_s:
            raise ValueError(
                f"leader_renew_s: must be below leader_ttl_s ({self.leader_ttl_s}), got {self.leader_renew_s}"
            )
        return self

    @field_validator("registry_backend")
    @classmethod
    def _known_registry(cls, value: str) -> str:
        if value not in REGISTRIES:
            raise ValueError(f"unknown registry backend {value!r} (one of: {', '.join(sorted(REGISTRIES))})")
        return value

    def webhook_secret(self, setting: str) -> str | None:
        """The secret a webhook source names: a field of these settings, else `webhook_secrets[setting]`."""
        value = getattr(self, setting, None) if setting in type(self).model_fields else None
        value = value if isinstance(value, SecretStr) else self.webhook_secrets.get(setting)
        return value.get_secret_value() if value is not None else None

    def rules_for(self, model: str) -> list[TriggerRule]:
        """The trigger rules of `model`, falling back to '*' and then to the built-in defaults."""
        if model in self.triggers:
            return self.triggers[model]
        if "*" in self.triggers:
            return self.triggers["*"]
        return DEFAULT_TRIGGERS
