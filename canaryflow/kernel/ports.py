"""The small interfaces behind which every external system sits.

The controller and the workflow steps are written against these; one file per backend implements
each (MLflow, Prometheus, git, GitHub, Argo, the local runner). Tests swap a backend only where the
real one cannot run here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from canaryflow.kernel.analysis.observations import Observations
from canaryflow.kernel.contracts.drift import PredictionRecord
from canaryflow.kernel.contracts.notifications import RolloutNotice
from canaryflow.kernel.types import (
    ApprovalRequest,
    ApprovalState,
    CommitResult,
    Decision,
    ReadinessResult,
    RolloutSpec,
    WorkflowStatus,
)


@runtime_checkable
class Registry(Protocol):
    """The model registry: reads which version holds an alias, moves aliases, tags versions."""

    def version_for_alias(self, model: str, alias: str) -> str | None: ...

    def set_alias(self, model: str, alias: str, version: str) -> None: ...

    def delete_alias(self, model: str, alias: str) -> None: ...

    def set_version_tag(self, model: str, version: str, key: str, value: str) -> None: ...

    def delete_version_tag(self, model: str, version: str, key: str) -> None: ...

    def version_tags(self, model: str, version: str) -> dict[str, str]: ...


@runtime_checkable
class GitOpsRepo(Protocol):
    """The GitOps repository: every traffic change is one commit carrying the audit trailers."""

    def commit_step(
        self, spec: RolloutSpec, weight: int, decision: Decision | str, reason: str = ""
    ) -> CommitResult:
        """One step's commit; `reason` (a retried step: who and why) becomes its `Reason:` trailer."""
        ...

    def rollback(self, spec: RolloutSpec, reason: str) -> CommitResult: ...


@runtime_checkable
class ApprovalGate(Protocol):
    """A human approval before promotion (a pull request carrying the analysis report)."""

    def request(self, spec: RolloutSpec, report_markdown: str) -> ApprovalRequest: ...

    def state(self, request: ApprovalRequest) -> ApprovalState: ...

    def complete(self, request: ApprovalRequest) -> None: ...


@runtime_checkable
class ReviewAuthority(Protocol):
    """Who may decide on a promotion pull request, and where that pull request lives.

    A signed webhook proves only that GitHub sent it; whether its review counts depends on the
    repository (`repository`, owner/name) and on the reviewer holding write access there."""

    @property
    def repository(self) -> str: ...

    def can_approve(self, login: str) -> bool: ...


@runtime_checkable
class WorkflowEngine(Protocol):
    """Runs the rollout workflow: Argo Workflows on a cluster, the local runner on one machine."""

    def submit(self, spec: RolloutSpec) -> str: ...

    def status(self, name: str) -> WorkflowStatus: ...

    def reconcile(self, name: str) -> WorkflowStatus:
        """Moves the workflow on as far as it goes without blocking, then reports where it stands.

        The local runner runs ready nodes (one `analyze_once` per analyze node per call); Argo runs on
        its own, so there it is a status read that also mirrors node outputs.
        """
        ...

    def resume(self, name: str) -> None: ...

    def stop(self, name: str, reason: str) -> None: ...


class EngineRefused(RuntimeError):
    """The workflow engine cannot do what was asked to the workflow as it stands now (pause one that
    already waits for approval, retry one that is still running); the message says why. Not a fault
    of the engine: asking again later will not help, so an action that meets it is refused."""


@runtime_checkable
class PromotionRollback(Protocol):
    """Undoes a promotion after its rollout ended: the rollout's own rollback step (what its exit
    handler runs when the watch after promotion fails), run again for `spec` with `reason`: git back
    to the champion before it, the registry's aliases and tags restored. Idempotent, as the step is;
    returns the rollback commit's sha. The drift monitor's opt-in response (`on_drift: rollback`)."""

    def rollback(self, spec: RolloutSpec, reason: str) -> str: ...


@runtime_checkable
class CanaryReadiness(Protocol):
    """Is the canary serving? Kubernetes Deployment status on a cluster, the inference server's /ready
    on one machine. The wait-ready step polls it so analysis never starts on a canary that is not up."""

    def check(self, spec: RolloutSpec) -> ReadinessResult: ...


class TrafficUnreadable(RuntimeError):
    """The live traffic split could not be read (API unreachable or refusing); the message says why."""


@runtime_checkable
class LiveTraffic(Protocol):
    """The traffic split the cluster serves now for a rollout's model (version -> percent), read through
    the rollout's traffic router. The wait-ready step compares it with the weights the step committed,
    so analysis never starts before a step took effect. Raises TrafficUnreadable."""

    def weights(self, spec: RolloutSpec) -> dict[str, int]: ...


if TYPE_CHECKING:
    from policies.model import Policy


class MetricsError(RuntimeError):
    """The metrics backend could not be read (unreachable, bad answer); the message says which."""


class MetricsQueryError(MetricsError):
    """A policy's metric provider or query cannot be read as the policy says (a template that cannot be
    filled, a histogram query answering without `le`, a backend that cannot read providers): the
    message names the policy field. Waiting will not mend it, so the step ends instead of waiting."""


@runtime_checkable
class MetricsSource(Protocol):
    """Counts per version since a moment (the unix time a traffic step started), now or at every look
    since: what the analysis engine compares."""

    def observe(
        self,
        model: str,
        baseline_version: str,
        canary_version: str,
        since: float,
        *,
        policy: Policy | None = None,
    ) -> Observations: ...

    def observe_looks(
        self,
        model: str,
        baseline_version: str,
        canary_version: str,
        since: float,
        every_s: float,
        *,
        policy: Policy | None = None,
        from_look: int = 1,
    ) -> list[Observations]:
        """Both arms at every look since `since`, oldest first, each counted from `since` (as `observe`):
        what the live step pairs latencies by time on, look by look (`paired.py`). A source with
        history (Prometheus) reads the looks every `every_s` from `since` up to now, so a restarted
        step gets the same readings; one without (the servers' own /metrics) returns the readings it
        took at its own earlier calls in this process, and now. Empty before the first look.
        `policy`: given only when it reads metric providers (`Policy.reads_own_series`): the series
        are then its providers' and queries' (`canaryflow.kernel.contracts.providers`).
        `from_look`: only the looks from this one on (look k is at `since + k * every_s`, the first
        is 1): a step that kept the earlier ones reads only its new looks. A source that reads for
        many steps at once, off their threads (`canaryflow.adapters.metrics.batched`), returns the
        looks it has read so far: none yet means "ask again", not "no look is due"."""
        ...

    def first_request_at(
        self, model: str, version: str, since: float, every_s: float, *, policy: Policy | None = None
    ) -> float | None:
        """The first look (every `every_s` from `since`, unix time) at which `version` had served a
        request since `since`; None while it has served none. Where a warm-up counts from the canary's
        first request; a source with history (Prometheus) finds the same moment again after a restart.
        `policy` as for `observe_looks` (its `metrics_provider` counts the requests)."""
        ...

    def scraped(self, model: str, version: str) -> bool | None:
        """Whether the metrics store has scraped `version`'s serving target at least once: True, False
        while it has not, None where this source cannot tell (its targets do not carry the arm labels,
        or it reads the servers itself). A canary that serves before its first scrape is missing from
        the first looks, and the sample-ratio check would read its share as 0%: the wait-ready step
        waits for True."""
        ...


@runtime_checkable
class Notifier(Protocol):
    """Tells people and machines that a rollout moved. `notify` never blocks and never raises: the
    reconcile loop calls it between two store writes; delivery (with retries) happens elsewhere."""

    def notify(self, notice: RolloutNotice) -> None: ...

    def close(self, timeout_s: float = 5.0) -> None: ...


@runtime_checkable
class PredictionLogReader(Protocol):
    """Where the inference servers' prediction logs are read back (local JSONL files today)."""

    def read(
        self, model: str, start: float, end: float, *, version: str | None = None, limit: int | None = None
    ) -> list[PredictionRecord]:
        """Records of `model` (and `version`) with start <= t < end; beyond `limit`, a uniform sample."""
        ...

    def follow(self, model: str, since: float | None = None) -> list[PredictionRecord]:
        """Records of `model` appended since the previous call (on the first, those of files written
        since `since`, or all)."""
        ...
