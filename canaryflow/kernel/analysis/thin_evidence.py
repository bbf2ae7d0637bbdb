"""Which policy a rollout runs under when evidence is thin: the decision of the thin-evidence switch.

A policy that sets `thin_evidence` (`policies.model.ThinEvidencePolicy`) asks for this: from the
champion's traffic before the rollout (its rate, 5xx share and latency histogram), forecast every
step of the policy; if one is not expected to decide within `max_duration_s`, run the rollout under
what `forecast.recommend` finds instead — the policy itself with its mixture prior tuned to the
expected sample size, else `switch_to` likewise tuned — provided that one is expected to decide in
time. Without `thin_evidence`, or when the policy fits, or when nothing fits, the policy stays (its
forecast and advice still go out). The bench (`bench/analysis.py`, the `auto` rows) measures this
function on the same inputs.

Pure: policies and numbers in, a choice out. The controller reads the traffic and records the
choice (`controller.policy_choice`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from canaryflow.kernel.analysis.forecast import Forecast, forecast, forecast_lines, recommend
from policies.model import tuned_policy_name

if TYPE_CHECKING:
    from policies.model import Policy


@dataclass(frozen=True)
class PolicyChoice:
    """The policy a rollout runs under, and the forecasts behind the choice."""

    name: str  # what the rollout runs under, as recorded: `low-traffic@prior_strength=1300`
    policy: Policy  # that policy, loaded (its prior maybe tuned)
    forecast: Forecast  # of `policy`
    asked: Forecast  # of the policy asked for (the same as `forecast` when not switched)
    switched_from: str | None = None  # the policy asked for, when the rollout runs under another

    @property
    def tuned(self) -> bool:
        return self.forecast is not self.asked

    def note(self, history_s: float | None = None) -> list[str]:
        """Lines for the rollout's record and its first notice: the forecast asked for, and the switch."""
        seen = f" (the champion's last {history_s:g} s)" if history_s else ""
        lines = [f"forecast at {self.asked.rate_rps:.3g} requests/s{seen}:"]
        lines += [f"- {line}" for line in forecast_lines(self.asked.to_dict())]
        if self.tuned:
            what = self.name if self.switched_from else f"this policy as {self.name}"
            lines.append(f"thin evidence: the rollout runs under {what} instead:")
            lines += [f"- {line}" for line in forecast_lines(self.forecast.to_dict())]
        return lines


def choose_policy(
    policy: Policy,
    name: str,
    rate_rps: float,
    switch_to: Policy | None = None,
    *,
    tune: bool = True,
    **reference: Any,
) -> PolicyChoice:
    """The policy to run a rollout under at `rate_rps` requests/s in all (`reference`: the champion's
    `error_rate`, `latency_bounds`, `latency_cdf`, as `forecast.forecast` takes them).

    `switch_to`: the policy `policy.thin_evidence.switch_to` names, loaded; ignored (no switch) when
    the policy does not set `thin_evidence`. `tune=False`: no tuned prior, `switch_to` as shipped
    only (where a rollout can only run under a policy installed by name: Argo's WorkflowTemplates)."""
    asked = forecast(policy, rate_rps, **reference)
    if policy.thin_evidence is None or asked.fits:
        return PolicyChoice(name, policy, asked, asked)
    if not tune:
        shipped = forecast(switch_to, rate_rps, **reference) if switch_to is not None else None
        if switch_to is None or shipped is None or not shipped.fits:
            return PolicyChoice(name, policy, asked, asked)
        return PolicyChoice(policy.thin_evidence.switch_to, switch_to, shipped, asked, switched_from=name)
    candidates = {policy.thin_evidence.switch_to: switch_to} if switch_to is not None else {}
    better = recommend(policy, rate_rps, candidates, **reference)
    if better is None:  # nothing fits: the policy stays, and its advice says so
        return PolicyChoice(name, policy, asked, asked)
    if better.name == "this policy":
        return PolicyChoice(_named(name, policy, better.policy), better.policy, better.forecast, asked)
    assert switch_to is not None
    recorded = _named(better.name, switch_to, better.policy)
    return PolicyChoice(recorded, better.policy, better.forecast, asked, switched_from=name)


def _named(name: str, shipped: Policy, tuned: Policy) -> str:
    """`name`, with the tuned prior where it differs from the one the policy ships with."""
    same = tuned.prior_strength == shipped.prior_strength
    return name if same else tuned_policy_name(name, tuned.prior_strength)
