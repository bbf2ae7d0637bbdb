"""Checks in words and numbers with units, for a person: the CLI, the API, the report, the PR body.

    latency p95 182 ms vs 177 ms baseline: +2.8% at the same moments (bounds −4.1% … +12.0%), ...: pass

The raw numbers stay in the check's JSON fields; this is only how they read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from canaryflow.kernel.analysis.kinds import METRIC_KINDS, CheckSeries
from canaryflow.kernel.analysis.kinds.base import MISSING_ARM
from canaryflow.kernel.contracts.causes import FailureCause

VERDICT_WORDS = {"pass": "pass", "fail": "fail", "inconclusive": "not decided yet"}


def check_reason(check: CheckSeries, i: int, verdict: str, warming: bool = False) -> str:
    stats = {name: float(values[i]) for name, values in check.stats.items()}
    if check.kind == "sample_ratio":
        share, expected = stats["canary_share"], stats["expected_share"]
        if not check.has_data[i]:
            return "sample ratio: no requests yet"
        if verdict == "fail":
            return f"sample-ratio mismatch: the canary got {share:.1%} of requests, configured {expected:.0%}"
        return f"sample ratio: canary got {share:.1%} of requests, consistent with {expected:.0%}"
    if warming:
        return f"{label(check.metric)}: warming up (data before the warm-up's end is left out)"
    if not check.has_data[i]:
        # One arm with data and the other without: say which (a series the canary's server lacks).
        missing = [arm for arm in ("canary", "baseline") if arm in stats and math.isnan(stats[arm])]
        if stats.get(MISSING_ARM) in (1.0, 2.0):
            missing = ["canary" if stats[MISSING_ARM] == 1.0 else "baseline"]
        which = f" from the {missing[0]}" if len(missing) == 1 else ""
        return f"{label(check.metric)}: no data{which}" + (
            "" if check.required else " (optional metric, ignored)"
        )
    return describe(check.metric, check.kind, stats, check.tolerance, check.alternative, verdict)


def label(metric: str) -> str:
    """`latency_p95` -> `latency p95`, `latency_p99_9` -> `latency p99.9`."""
    head, sep, tail = metric.rpartition("_p")
    if sep and tail.replace("_", "").isdigit():
        return f"{head} p{tail.replace('_', '.')}"
    return metric


def amount(kind: str, value: float | None) -> str:
    """A difference on the scale of the kind's tolerance: relative %, rate points, or a level."""
    if value is None or not math.isfinite(value):
        return "∞" if value is not None and value > 0 else "−∞" if value is not None else "?"
    spec = METRIC_KINDS.get(kind)
    comparison = spec.comparison if spec else "level"
    if comparison == "relative":
        text = f"{value:+.1%}"
    elif comparison == "difference":
        text = f"{value * 100:+.2f} pt"
    else:
        text = f"{value:.3f}"
    return text.replace("-", "−")


def _value(kind: str, value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "?"
    spec = METRIC_KINDS.get(kind)
    return spec.unit(value) if spec else f"{value:g}"


def describe(
    metric: str,
    kind: str,
    stats: Mapping[str, float | None],
    tolerance: float,
    alternative: float | None,
    verdict: str,
) -> str:
    """One check in words. `stats` are the check's fields (JSON or arrays read at one look)."""
    spec = METRIC_KINDS.get(kind)
    name = label(metric)
    canary, baseline = stats.get("canary"), stats.get("baseline")
    estimate = stats.get("worse_estimate")
    low, high = stats.get("worse_lower"), stats.get("worse_upper")
    if spec is not None and spec.comparison == "level":
        head = f"{name} {_value(kind, canary)}"
    elif baseline is not None:
        head = f"{name} {_value(kind, canary)} vs {_value(kind, baseline)} baseline: {amount(kind, estimate)}"
        if stats.get("paired"):  # the relative figure compares the arms at the same moments (paired.py)
            head += " at the same moments"
    else:
        head = f"{name} {_value(kind, canary)}"
    if low is None and high is None:  # a gauge, read as it is
        limits = f"tolerance {amount(kind, tolerance)}"
        return f"{head}, {limits}: {VERDICT_WORDS.get(verdict, verdict)}"
    decision = deciding_bounds(kind, stats, tolerance, alternative, verdict)
    return f"{head}{_coarse_buckets(kind, stats)}; {decision}"


def deciding_bounds(
    kind: str, stats: Mapping[str, float | None], tolerance: float, alternative: float | None, verdict: str
) -> str:
    """The bound each decision uses, beside the threshold it is compared with, so that a reader can
    check the verdict against the numbers on the same line:

    - fail: the lower bound (at the at-tolerance level) above the tolerance, the lower bound at the
      stricter same-as-baseline level above 0, and the second half of the data still beyond the
      tolerance; or the latest window's lower bound above the tolerance; or the trend;
    - pass: the upper bound (at the promotion level) below the alternative;
    - not decided: each rule with its bound, and what is missing when a lower bound is already
      above the tolerance (the demo's "+24.5% … not decided yet")."""
    low, high = _known(stats.get("worse_lower")), _known(stats.get("worse_upper"))
    strict = _known(stats.get("worse_than_baseline_lower"))
    recent = _known(stats.get("recent_worse_estimate"))
    tol, alt = amount(kind, tolerance), amount(kind, alternative if alternative is not None else tolerance)
    cause = FailureCause(int(stats.get("cause") or 0))
    words = VERDICT_WORDS.get(verdict, verdict)
    if verdict == "pass":
        return f"upper bound {amount(kind, high)} < alternative {alt}: {words}"
    if verdict == "fail" and cause is FailureCause.LATEST_WINDOW:
        window = amount(kind, stats.get("window_worse_estimate"))
        bound = amount(kind, stats.get("window_worse_lower"))
        return f"latest window {window} shown beyond the tolerance: lower bound {bound} > {tol}: {words}"
    if verdict == "fail" and cause is FailureCause.TREND:
        grown = amount(kind, stats.get("trend_lower"))
        half = amount(kind, tolerance / 2)
        return f"trend: grown by at least {grown} since the earlier windows (> {half}): {words}"
    if verdict == "fail":
        extra = f"; {amount(kind, strict)} > 0 at the stricter level" if strict is not None else ""
        if recent is not None:
            extra += f"; second half {amount(kind, recent)}"
        return f"lower bound {amount(kind, low)} > tolerance {tol}{extra}: {words}"
    rules = (
        f"rollback needs the lower bound above the tolerance {tol} ({amount(kind, low)})"
        + (f" and above 0 at the stricter level ({amount(kind, strict)})" if strict is not None else "")
        + f", promotion the upper bound below the alternative {alt} ({amount(kind, high)})"
    )
    missing = ""
    if low is not None and low > tolerance:
        if strict is not None and strict <= 0:
            missing = " (not yet shown worse than the baseline at the stricter level)"
        elif recent is not None and recent <= tolerance:
            missing = (
                f" (the second half shows {amount(kind, recent)}: an excess that fades is not a failure)"
            )
    return f"{rules}: {words}{missing}"


def _known(value: float | None) -> float | None:
    """None for a statistic not computed at this look (NaN); infinities stay (an unbounded side)."""
    return None if value is None or math.isnan(value) else value


COARSE_BUCKET = 1.25  # a bucket wider than this ratio resolves less than a policy's usual thresholds


def _coarse_buckets(kind: str, stats: Mapping[str, float | None]) -> str:
    """The buckets that bound both arms' quantiles, where the producer's buckets are coarse (wider than
    `COARSE_BUCKET`, or the quantile beyond the last bound): the answer is no finer than they are."""
    spans: list[str] = []
    coarse = False
    for arm in ("canary", "baseline"):
        low, high = stats.get(f"{arm}_bucket_low"), stats.get(f"{arm}_bucket_high")
        if low is None or high is None or math.isnan(low) or math.isnan(high):
            return ""
        if math.isfinite(high):
            spans.append(f"{_value(kind, low)}–{_value(kind, high)}")
            coarse = coarse or (low > 0 and high / low > COARSE_BUCKET)
        else:
            spans.append(f"above {_value(kind, low)}")
            coarse = True
    return f"; buckets: canary {spans[0]}, baseline {spans[1]}" if coarse else ""
