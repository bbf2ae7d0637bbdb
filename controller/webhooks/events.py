"""What a webhook delivery means once its sender's format is stripped off.

Every sender (MLflow OSS, Databricks, GitHub) is parsed into one of these, so that the rollout logic
never sees a sender's wire format and a new sender is one parser file.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from canaryflow.kernel.types import K8sName, ModelVersion

RegistryChange = Literal[
    "alias_set", "tag_set", "version_created", "stage_transitioned", "transition_requested"
]
# The name of a registered webhook source (controller.webhooks.registry): its route and inbox label.
SOURCE_NAME = r"^[a-z][a-z0-9-]{0,31}$"
# Bounds of what is stored: SQLite's INTEGER is signed 64-bit (a larger pull-request number was
# acknowledged, then failed every tick); texts at most what the senders themselves allow, with room.
MAX_PR_NUMBER = 2**63 - 1
Text = Annotated[str, Field(max_length=1024)]
LongText = Annotated[str, Field(max_length=8192)]  # an MLflow tag value (at most 8,000 characters)


class WebhookRejected(Exception):
    """A delivery refused before anything is stored; `status` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RegistryEvent(BaseModel):
    """A model-registry change, whichever registry sent it."""

    model_config = ConfigDict(frozen=True)

    source: str = Field(pattern=SOURCE_NAME)
    delivery_id: str
    change: RegistryChange
    model: K8sName
    version: ModelVersion
    alias: Text | None = None
    tag_key: Text | None = None
    tag_value: LongText | None = None
    to_stage: Text | None = None
    from_stage: Text | None = None


class ApprovalEvent(BaseModel):
    """A pull-request review or merge that may release (or refuse) a rollout's approval gate.

    It counts for a rollout only when everything matches the rollout's request: `repository` is the
    configured GitOps repository, `pr_number` its pull request, `head_sha` the promotion commit the
    request asked to approve, `actor` holds write access and `at` (when it was submitted) is newer than
    the request. The parser keeps what the sender said; the reconciler decides whether it counts.
    """

    model_config = ConfigDict(frozen=True)

    source: str = Field(default="github", pattern=SOURCE_NAME)
    delivery_id: str
    repository: Text
    pr_number: StrictInt = Field(ge=1, le=MAX_PR_NUMBER)
    pr_url: Text
    outcome: Literal["approved", "rejected", "none"]
    actor: Text = ""
    head_sha: Text = ""
    at: float | None = Field(
        default=None, allow_inf_nan=False, description="unix seconds the review was submitted / PR closed"
    )
