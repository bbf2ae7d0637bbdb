"""Cosine distance between canary and baseline embeddings of the same (shadowed) request: a level."""

from __future__ import annotations

from canaryflow.kernel.analysis.kinds.base import CheckSeries, Levels, MetricKind, MetricSpec, no_data
from canaryflow.kernel.analysis.sequential import quantile_cs
from canaryflow.kernel.analysis.series import ObservationSeries


def evaluate(metric: MetricSpec, series: ObservationSeries, levels: Levels) -> list[CheckSeries]:
    """No "same as baseline" state (one sample per shadowed request), so the strict rollback level
    applies: fails only when a quantile is shown above the tolerance."""
    alpha, beta = levels.same, levels.promote
    out: list[CheckSeries] = []
    for name, q in zip(metric.checks, metric.quantiles, strict=True):
        if series.shadow_bounds is None or series.shadow_counts is None or series.shadow_totals is None:
            out.append(no_data(metric, name, len(series)))
            continue
        lo_r, _, est = quantile_cs(series.shadow_bounds, series.shadow_counts, series.shadow_totals, q, alpha)
        _, hi_p, _ = quantile_cs(series.shadow_bounds, series.shadow_counts, series.shadow_totals, q, beta)
        has_data = series.shadow_totals > 0
        alternative = float(metric.alternative if metric.alternative is not None else metric.tolerance)
        out.append(
            CheckSeries(
                metric=name,
                kind=metric.kind,
                required=metric.required,
                has_data=has_data,
                fails=has_data & (lo_r > metric.tolerance),
                passes=has_data & (hi_p < alternative),
                stats={"canary": est, "worse_estimate": est, "worse_lower": lo_r, "worse_upper": hi_p},
                tolerance=metric.tolerance,
                alternative=metric.alternative,
                direction=metric.direction,
            )
        )
    return out


KIND = MetricKind(
    name="shadow_distance",
    signal="shadow_distance",
    comparison="level",
    statistical=True,
    quantiles=True,
    evaluate=evaluate,
    unit=lambda d: f"{d:.3f}",
    description="cosine distance canary vs baseline on shadowed inputs; tolerance an absolute level",
)
