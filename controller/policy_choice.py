"""The forecast before a rollout starts, and the thin-evidence switch it may call for.

Before the reconciler submits a rollout's workflow it asks `PolicyChooser.choose`: the champion's
last `thin_evidence.history_s` (600 s without the field) of traffic, read through the same
`MetricsSource` the steps use, gives the rate, 5xx share and latency histogram the forecast needs
(`canaryflow.kernel.analysis.forecast`). The forecast of every step goes into the rollout's record
(the `started` transition's reason) and so into the first notice. When the policy opts in
(`thin_evidence`) and a step cannot be expected to decide within `max_duration_s`, the rollout is
submitted under the recommended policy instead (`thin_evidence.choose_policy`, pure): the record's
policy becomes it (`low-traffic@prior_strength=100`: `load_policy` reads it back, so a restarted
controller or step judges with the same), and its commits, verdicts and pull request carry it.

Never in the way: without metrics, without traffic, or with a policy that cannot be read, the rollout
starts under its own policy and the note says why there is no forecast.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from canaryflow.kernel.analysis.forecast import traffic_reference
from canaryflow.kernel.analysis.observations import Observations
from canaryflow.kernel.analysis.thin_evidence import choose_policy
from canaryflow.kernel.ports import MetricsError
from controller.observability import event
from controller.rollout.records import RolloutRecord
from policies import Policy, PolicyError

DEFAULT_HISTORY_S = 600.0  # the champion's traffic read when the policy has no `thin_evidence`


class ChampionTraffic(Protocol):
    """What the chooser reads: `MetricsSource.observe` (the champion's requests since a moment)."""

    def observe(
        self,
        model: str,
        baseline_version: str,
        canary_version: str,
        since: float,
        *,
        policy: Policy | None = None,
    ) -> Observations: ...


@dataclass(frozen=True)
class StartChoice:
    """The policy to submit the rollout under, and the lines to record with its start."""

    policy: str
    note: list[str]

    @property
    def reason(self) -> str:
        return "\n".join(self.note)


class PolicyChooser:
    def __init__(
        self,
        metrics: ChampionTraffic,
        policy_for: Callable[[str], Policy],
        clock: Callable[[], float],
        *,
        tune: bool = True,
    ) -> None:
        """`tune=False` where the engine runs only policies installed by name (Argo's templates)."""
        self.metrics, self.policy_for, self.clock, self.tune = metrics, policy_for, clock, tune

    def choose(self, record: RolloutRecord) -> StartChoice:
        """Never raises: a forecast that cannot be made must not hold the rollout's start."""
        try:
            return self._choose(record)
        except Exception as exc:
            event("no forecast at start", logging.WARNING, rollout=record.id, error=repr(exc))
            return StartChoice(record.policy, [f"no forecast: {exc}"])

    def _choose(self, record: RolloutRecord) -> StartChoice:
        policy = self.policy_for(record.policy)
        history_s = policy.thin_evidence.history_s if policy.thin_evidence else DEFAULT_HISTORY_S
        try:
            seen = self.metrics.observe(
                record.model,
                record.baseline_version,
                record.canary_version,
                self.clock() - history_s,
                policy=policy if policy.reads_own_series else None,
            )
        except MetricsError as exc:
            return StartChoice(record.policy, [f"no forecast: the champion's traffic is unreadable ({exc})"])
        reference = traffic_reference(seen.model_copy(update={"elapsed_s": history_s}))
        if reference is None:
            return StartChoice(
                record.policy, [f"no forecast: the champion served no request in the last {history_s:g} s"]
            )
        rate, shape = reference
        switch_to: Policy | None = None
        if policy.thin_evidence is not None:
            try:
                switch_to = self.policy_for(policy.thin_evidence.switch_to)
            except PolicyError as exc:  # load_policy refuses such a policy; another loader may not
                event("switch_to unreadable", logging.WARNING, rollout=record.id, error=str(exc))
        choice = choose_policy(policy, record.policy, rate, switch_to, tune=self.tune, **shape)
        return StartChoice(choice.name, choice.note(history_s))
