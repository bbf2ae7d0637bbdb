"""The evidence over time: per step and check, the estimate and its confidence bounds at each look,
against the tolerance and the alternative, as inline SVG drawn on the server.

The numbers are the step's verdict's `evidence` (`canaryflow.kernel.types.CheckEvidence`, what
`GET /rollouts/{id}` returns in `steps[].verdict.evidence`); the rollout page's live part is rendered
again every refresh, so the plots grow look by look without any script. A check fails once its lower
bound clears the tolerance, passes once its upper bound falls below the alternative: the picture is
the rule. Bounds that are still unbounded (no data yet, or too few requests) are drawn to the edge.
"""

from __future__ import annotations

import math
from typing import Any

from markupsafe import escape

from canaryflow.kernel.analysis.kinds import METRIC_KINDS
from controller.rollout.records import RolloutDetail

WIDTH, HEIGHT = 360, 150
LEFT, RIGHT, TOP, BOTTOM = 56, 10, 10, 22


def plots(detail: RolloutDetail) -> list[dict[str, Any]]:
    """One plot per step and check that has evidence: {step, metric, looks, svg}, in step order."""
    out: list[dict[str, Any]] = []
    for step in detail.steps:
        for series in (step.verdict or {}).get("evidence") or []:
            title = f"{step.phase} {step.index + 1} at {step.weight}%"
            out.append(
                {
                    "step": title,
                    "metric": str(series.get("metric", "")),
                    "looks": len(series.get("elapsed_s") or []),
                    "svg": svg(series, title),
                }
            )
    return out


def _fmt(kind: str) -> Any:
    relative = getattr(METRIC_KINDS.get(kind), "comparison", "") == "relative"
    return (lambda v: f"{v * 100:+.1f}%") if relative else (lambda v: f"{v:+.3g}")


def _finite(values: list[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]


def svg(series: dict[str, Any], title: str) -> str:
    """One check's plot; `series` is a `CheckEvidence` as JSON."""
    t = [float(x) for x in series.get("elapsed_s") or []]
    est, lo, hi = (list(series.get(k) or []) for k in ("estimate", "lower", "upper"))
    if not t or not (len(t) == len(est) == len(lo) == len(hi)):
        return ""
    metric, fmt = str(series.get("metric", "")), _fmt(str(series.get("kind", "")))
    tol, alt = float(series.get("tolerance", 0.0)), float(series.get("alternative", 0.0))
    # The y range: the thresholds and the estimates in full, bounds only as far as that (an early
    # bound of +900% would flatten everything else).
    core = [0.0, tol, alt, *_finite(est)]
    span = max(max(core) - min(core), 1e-9)
    y_min, y_max = min(core) - 0.35 * span, max(core) + 0.35 * span
    for b in _finite(lo) + _finite(hi):
        y_min, y_max = min(y_min, max(b, min(core) - span)), max(y_max, min(b, max(core) + span))
    t0, t1 = t[0], max(t[-1], t[0] + 1.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(v: float) -> float:
        return LEFT + plot_w * (v - t0) / (t1 - t0)

    def y(v: Any, edge: float) -> float:
        value = float(v) if isinstance(v, int | float) and math.isfinite(v) else edge
        value = min(max(value, y_min), y_max)
        return TOP + plot_h * (y_max - value) / (y_max - y_min)

    band = [f"{x(a):.1f},{y(b, y_max):.1f}" for a, b in zip(t, hi, strict=True)]
    band += [f"{x(a):.1f},{y(b, y_min):.1f}" for a, b in reversed(list(zip(t, lo, strict=True)))]
    name = _esc(metric)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="evidence-plot" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" data-metric="{name}" data-looks="{len(t)}" '
        f'aria-label="{name}: how much worse the canary is, with its confidence bounds, at each look">',
        f"<title>{_esc(title)}: {name}</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#ccc"/>',
        f'<polygon class="bounds" points="{" ".join(band)}" fill="#90caf9" fill-opacity="0.45"/>',
    ]
    for value, colour, label in (
        (0.0, "#9e9e9e", "0"),
        (tol, "#c62828", "tolerance"),
        (alt, "#2e7d32", "alt."),
    ):
        yy = y(value, value)
        parts.append(
            f'<line class="threshold-{label.rstrip(".")}" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{yy:.1f}" '
            f'y2="{yy:.1f}" stroke="{colour}" stroke-dasharray="4 3"/>'
            f'<text x="{LEFT - 4}" y="{yy + 4:.1f}" font-size="10" text-anchor="end" fill="{colour}">'
            f"{_esc(fmt(value) if label != '0' else '0')}</text>"
        )
    points = [
        (x(a), y(e, 0.0), a, e, b, c)
        for a, e, b, c in zip(t, est, lo, hi, strict=True)
        if isinstance(e, int | float) and math.isfinite(e)
    ]
    if points:
        line = " ".join(f"{px:.1f},{py:.1f}" for px, py, *_ in points)
        parts.append(
            f'<polyline class="estimate" points="{line}" fill="none" stroke="#0d47a1" stroke-width="1.5"/>'
        )
    for px, py, a, e, b, c in points:
        bounds = f"[{_bound(b, fmt)}, {_bound(c, fmt)}]"
        parts.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="#0d47a1"><title>{_esc(metric)} at {a:.0f} s: '
            f"{_esc(fmt(e))} {_esc(bounds)}</title></circle>"
        )
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - 6}" font-size="10">{t0:.0f} s</text>')
    parts.append(
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" font-size="10" text-anchor="end">{t1:.0f} s</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _bound(value: Any, fmt: Any) -> str:
    return fmt(float(value)) if isinstance(value, int | float) and math.isfinite(value) else "unbounded"


def _esc(text: str) -> str:
    return str(escape(text))
