"""Plots for the report, as inline PNG data URIs (the report is one self-contained HTML file)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from canaryflow.app.report.model import EvidencePoint, PhaseMark, TimePoint
from canaryflow.kernel.analysis.observations import Histogram

BASELINE_COLOUR = "#1f77b4"
CANARY_COLOUR = "#ff7f0e"


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def latency_cdf(baseline: Histogram | None, canary: Histogram | None) -> str | None:
    """Both arms' latency distributions as CDFs over the histogram's bucket bounds (ms, log scale)."""
    arms = [
        (n, h, c) for n, h, c in (("baseline", baseline, BASELINE_COLOUR), ("canary", canary, CANARY_COLOUR))
    ]
    arms = [(n, h, c) for n, h, c in arms if h is not None and h.total > 0]
    if not arms:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, hist, colour in arms:
        assert hist is not None
        bounds_ms = np.asarray(hist.bounds) * 1000.0
        cdf = np.asarray(hist.counts, dtype=float) / hist.total
        ax.step(bounds_ms, cdf, where="post", label=f"{name} (n={hist.total})", color=colour, linewidth=2)
    for q in (0.5, 0.95):
        ax.axhline(q, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("request latency (ms, bucket upper bounds)")
    ax.set_ylabel("fraction of requests ≤ x")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Latency distribution, canary vs baseline")
    return _png(fig)


def error_rates(timeline: list[TimePoint]) -> str | None:
    """Each arm's error rate per interval between samples, with the canary weight behind it."""
    if len(timeline) < 2:
        return None
    t = np.array([p.t_s for p in timeline])
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for arm, colour in (("baseline", BASELINE_COLOUR), ("canary", CANARY_COLOUR)):
        req = np.array([getattr(p, f"{arm}_requests") for p in timeline], dtype=float)
        err = np.array([getattr(p, f"{arm}_errors") for p in timeline], dtype=float)
        d_req, d_err = np.diff(req), np.diff(err)
        rate = np.divide(d_err, d_req, out=np.full_like(d_err, np.nan), where=d_req > 0) * 100
        ax.plot(t[1:], rate, label=f"{arm} error rate", color=colour, linewidth=2, marker=".")
    ax.set_xlabel("seconds since the rollout started")
    ax.set_ylabel("errors (% of requests)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    weight_ax = ax.twinx()
    weight_ax.step(
        t, [p.weight for p in timeline], where="post", color="grey", alpha=0.5, label="canary weight"
    )
    weight_ax.set_ylabel("canary weight (%)")
    weight_ax.set_ylim(0, 105)
    lines = ax.get_legend_handles_labels()
    wlines = weight_ax.get_legend_handles_labels()
    ax.legend(lines[0] + wlines[0], lines[1] + wlines[1], loc="upper left")
    ax.set_title("Error rate over time")
    return _png(fig)


def request_rates(timeline: list[TimePoint]) -> str | None:
    """Requests per second per arm: shows the traffic split following each step."""
    if len(timeline) < 2:
        return None
    t = np.array([p.t_s for p in timeline])
    dt = np.diff(t)
    fig, ax = plt.subplots(figsize=(7, 3.0))
    for arm, colour in (("baseline", BASELINE_COLOUR), ("canary", CANARY_COLOUR)):
        req = np.array([getattr(p, f"{arm}_requests") for p in timeline], dtype=float)
        rate = np.divide(np.diff(req), dt, out=np.zeros_like(dt), where=dt > 0)
        ax.plot(t[1:], rate, label=arm, color=colour, linewidth=2)
    ax.set_xlabel("seconds since the rollout started")
    ax.set_ylabel("requests / s")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title("Traffic per version")
    return _png(fig)


def _scale(kind: str) -> tuple[float, str]:
    """Evidence is relative (latency) or a difference of rates (errors): both read best in %/points."""
    return (100.0, "% worse than the baseline") if kind != "error_rate" else (100.0, " points more errors")


def evidence(points: list[EvidencePoint], marks: list[PhaseMark]) -> list[tuple[str, str]]:
    """Per metric: the estimate of how much worse the canary is and its bounds over time, against the
    tolerance and alternative lines, with step changes, warm-ups, the bake and the watch marked."""
    out: list[tuple[str, str]] = []
    for metric in dict.fromkeys(p.metric for p in points):
        series = [p for p in points if p.metric == metric and p.estimate is not None]
        if not series:
            continue
        factor, unit = _scale(series[0].kind)
        t = np.array([p.t_s for p in series])
        with np.errstate(over="ignore"):  # a bound still open (float max) scales to inf: clipped below
            est = np.array([p.estimate for p in series], dtype=float) * factor
            lo = np.array([np.nan if p.lower is None else p.lower for p in series], dtype=float) * factor
            hi = np.array([np.nan if p.upper is None else p.upper for p in series], dtype=float) * factor
        fig, ax = plt.subplots(figsize=(7, 3.2))
        span = np.nanmax(np.abs(est)) if np.isfinite(est).any() else 10.0
        limit = max(3 * span, 3 * factor * (series[0].alternative or series[0].tolerance or 0.1))
        ax.fill_between(t, np.clip(lo, -limit, limit), np.clip(hi, -limit, limit), color=CANARY_COLOUR,
                        alpha=0.2, step="post", label="bounds")  # fmt: skip
        ax.step(t, est, where="post", color=CANARY_COLOUR, linewidth=2, label="estimate")
        if series[0].tolerance is not None:
            ax.axhline(series[0].tolerance * factor, color="#c62828", linestyle="--", label="tolerance")
        if series[0].alternative is not None:
            ax.axhline(series[0].alternative * factor, color="#8d6e00", linestyle=":", label="alternative")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        for mark in marks:
            ax.axvline(mark.t_s, color="grey", linewidth=0.8, linestyle="-.")
            ax.text(mark.t_s, limit * 0.95, f" {mark.label}", fontsize=7, va="top", color="#555")
        ax.set_ylim(-limit, limit)
        ax.set_xlabel("seconds since the rollout started")
        ax.set_ylabel(unit.strip())
        ax.set_title(f"{metric}: evidence over time")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
        out.append((metric, _png(fig)))
    return out
