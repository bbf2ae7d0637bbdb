"""The table of metric kinds: kind name -> how it is judged. The one place a kind is registered.

`policies.model` validates a policy's `metrics[i].kind` against this table (an unknown kind is
refused when the policy loads, naming the field), and the engine dispatches every metric through
it. Adding a kind is one module with an evaluator and a `KIND` entry, plus one line below
(docs/analysis.md, "Adding a metric kind", walks through one).
"""

from __future__ import annotations

from canaryflow.kernel.analysis.kinds import error_rate, gpu_memory, latency, llm, shadow_distance
from canaryflow.kernel.analysis.kinds.base import CheckSeries, Evaluator, Levels, MetricKind, MetricSpec

METRIC_KINDS: dict[str, MetricKind] = {
    kind.name: kind
    for kind in (
        latency.KIND,
        error_rate.KIND,
        gpu_memory.KIND,
        shadow_distance.KIND,
        *llm.KINDS,
    )
}


def metric_kind(name: str) -> MetricKind:
    """The registered kind, or a ValueError that lists the kinds there are."""
    try:
        return METRIC_KINDS[name]
    except KeyError:
        known = ", ".join(sorted(METRIC_KINDS))
        raise ValueError(f"unknown metric kind {name!r} (known: {known})") from None


__all__ = ["METRIC_KINDS", "CheckSeries", "Evaluator", "Levels", "MetricKind", "MetricSpec", "metric_kind"]
