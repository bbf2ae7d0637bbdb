"""Domain values shared by every part of canaryflow.

These are the contracts that cross package boundaries (controller, workflows, gitops, inference):
keeping them in one pure module lets each adapter depend on the core and never on another adapter.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Decision = Literal["promote", "rollback", "inconclusive"]
CheckVerdict = Literal["pass", "fail", "inconclusive"]
ApprovalState = Literal["pending", "approved", "rejected"]

# RFC 1123 label: what Kubernetes accepts as a name, and what cannot escape a directory. Matched with
# `fullmatch`: `$` in a Python regex also matches before a trailing newline ("minilm\n" would pass).
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# MLflow versions are positive integers; pinning to one keeps manifests from following an alias.
_VERSION = re.compile(r"[1-9][0-9]{0,9}")


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid Kubernetes name (lowercase letters, digits and '-', at most 63)"
        )
    return value


def _version(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise ValueError(f"{value!r} is not a registry version number (a positive integer)")
    return value


K8sName = Annotated[str, AfterValidator(_dns_label)]
ModelVersion = Annotated[str, AfterValidator(_version)]


class Check(BaseModel):
    """One metric's verdict inside an analysis; extra keys carry the statistics behind it."""

    model_config = ConfigDict(extra="allow")

    metric: str
    verdict: CheckVerdict
    reason: str = ""


class CheckEvidence(BaseModel):
    """One check's statistics at each look of a step, oldest first: how far worse the canary reads
    than the baseline (`estimate`, relative for relative kinds) with the confidence bounds the
    verdict is taken on (`lower` at the tolerance's level, `upper` at the promote level), against
    the `tolerance` (fail above it) and the `alternative` (pass below it). `elapsed_s` counts from
    the step's warm-up end; a None is a look without data. What the console plots over time."""

    metric: str
    kind: str
    tolerance: float
    alternative: float
    elapsed_s: list[float]
    estimate: list[float | None]
    lower: list[float | None]
    upper: list[float | None]


class Verdict(BaseModel):
    """The analysis record of ../shared/design.md: the decision and the checks that led to it."""

    decision: Decision
    decided_at_s: float | None = None
    checks: list[Check] = Field(default_factory=list)
    # A traffic step's forecast from the traffic seen so far (`analysis.forecast.Forecast.to_dict`):
    # each check's expected time to a decision and, when it cannot decide in time, the advice.
    forecast: dict[str, Any] | None = None
    # A live step's checks at every look judged so far, up to the verdict's (at most `EVIDENCE_POINTS`
    # looks, evenly spread, the last kept); None where the verdict is from one reading (a watch).
    evidence: list[CheckEvidence] | None = None
    # The policy the verdict was reached under (the rollout's: the thin-evidence switch may have
    # chosen it, `low-traffic@prior_strength=1300`); None where no rollout asked (a replay).
    policy: str | None = None


class RolloutSpec(BaseModel):
    """What a rollout is about: the parameters of the rollout Workflow and of every step."""

    model_config = ConfigDict(frozen=True)

    rollout_id: K8sName
    model: K8sName
    baseline_version: ModelVersion
    canary_version: ModelVersion
    policy: str = "default"
    environment: K8sName = "production"


class CommitResult(BaseModel):
    """What a GitOps write produced; `sha` is None when the render changed nothing."""

    sha: str | None
    changed: bool
    message: str = ""


class ApprovalRequest(BaseModel):
    """A handle on a pending human approval (a pull request on GitHub).

    `head_sha` is the commit the request asks to approve (the promotion commit, the pull request's head
    when it was opened) and `opened_at` when the request was made: a review counts only on that commit
    and only when newer, so an approval of something else, or from before, never releases a rollout.
    """

    id: str
    url: str = ""
    head_sha: str = ""
    opened_at: float | None = None


class ReadinessResult(BaseModel):
    """Whether the canary serves yet, and the one-line reason (shown while a rollout waits)."""

    ready: bool
    reason: str


class WorkflowNodeStatus(BaseModel):
    """One node of a rollout workflow (its DAG node id) and the outputs it produced so far.

    The controller mirrors these into its rollout store: `commit_sha` of set-weight / promote / rollback
    nodes, `verdict_json` of analyze nodes, `approval_id` / `approval_url` of request-approval.
    """

    id: str
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Error", "Skipped", "Omitted"]
    outputs: dict[str, str] = Field(default_factory=dict)
    started_at: float | None = None
    finished_at: float | None = None
    message: str = ""


class WorkflowStatus(BaseModel):
    """Where a rollout workflow stands, as the engine running it reports."""

    name: str
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Error", "Stopped"]
    node: str | None = None
    message: str = ""
    nodes: list[WorkflowNodeStatus] = Field(default_factory=list)
