"""The rollout report as one self-contained HTML page (inline plots, no external assets)."""

from __future__ import annotations

import html
import json

from canaryflow.app.report import plots
from canaryflow.app.report.model import ReportData

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:960px;
color:#222;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} .sub{color:#666;margin-top:0}
.badge{display:inline-block;padding:.2rem .7rem;border-radius:1rem;font-weight:600;color:#fff}
.badge.promote{background:#2e7d32}.badge.rollback{background:#c62828}
.badge.inconclusive{background:#f9a825;color:#222} td.promote{color:#2e7d32;font-weight:600}
td.rollback{color:#c62828;font-weight:600}
table{border-collapse:collapse;width:100%;margin:.6rem 0 1.4rem;font-size:.92rem}
th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f5f5} td.pass{color:#2e7d32;font-weight:600} td.fail{color:#c62828;font-weight:600}
td.inconclusive{color:#8d6e00;font-weight:600} img{max-width:100%;margin:.4rem 0 1rem}
code,pre{font-family:ui-monospace,Menlo,monospace;font-size:.85rem} pre{background:#f7f7f7;padding:.6rem;
overflow-x:auto}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _check_details(extra: dict[str, object]) -> str:
    if not extra:
        return ""
    shown = {k: v for k, v in extra.items() if not isinstance(v, list | dict) or len(str(v)) < 120}
    return _e(json.dumps(shown, default=str, sort_keys=True))


def _steps_table(data: ReportData) -> str:
    rows = []
    for i, step in enumerate(data.steps, start=1):
        verdict = step.verdict
        decision = verdict.decision if verdict else "running"
        ended = f"{step.ended_s:.0f}" if step.ended_s is not None else "—"
        checks = verdict.checks if verdict else []
        if not checks:
            rows.append(
                f"<tr><td>{i}</td><td>{step.weight}%</td><td>{step.started_s:.0f}–{ended}</td>"
                f"<td class='{_e(decision)}'>{_e(decision)}</td><td colspan=3></td></tr>"
            )
        for j, check in enumerate(checks):
            lead = (
                f"<td rowspan={len(checks)}>{i}</td><td rowspan={len(checks)}>{step.weight}%</td>"
                f"<td rowspan={len(checks)}>{step.started_s:.0f}–{ended}</td>"
                f"<td rowspan={len(checks)} class='{_e(decision)}'>{_e(decision)}</td>"
                if j == 0
                else ""
            )
            verdict_cell = f"<td class='{_e(check.verdict)}'>{_e(check.verdict)}</td>"
            rows.append(
                f"<tr>{lead}<td>{_e(check.metric)}</td>{verdict_cell}"
                f"<td>{_e(check.reason)}<br><code>{_check_details(check.model_extra or {})}</code></td></tr>"
            )
    head = (
        "<tr><th>step</th><th>weight</th><th>time (s)</th><th>step decision</th><th>metric</th>"
        "<th>verdict</th><th>why</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>{_forecasts(data)}"


def _forecasts(data: ReportData) -> str:
    """Each step's forecast (from the traffic it saw): the expected time of each check, the advice."""
    notes = []
    for i, step in enumerate(data.steps, start=1):
        forecast = step.verdict.forecast if step.verdict else None
        if not forecast:
            continue
        times = [
            f"{c['metric']} {c['seconds']:.0f} s"
            if c.get("seconds") is not None
            else f"{c['metric']} beyond reach"
            for s in forecast.get("steps", [])
            for c in s.get("checks", [])
        ]
        line = f"step {i} forecast at {forecast.get('rate_rps', 0):.3g} req/s: {', '.join(times)}"
        notes.append(
            f"<li>{_e(line)}</li>" + "".join(f"<li>{_e(a)}</li>" for a in forecast.get("advice", []))
        )
    return f"<ul class='forecast'>{''.join(notes)}</ul>" if notes else ""


def render_html(data: ReportData) -> str:
    spec = data.spec
    figures = [
        ("Latency", plots.latency_cdf(data.baseline_latency, data.canary_latency)),
        ("Errors", plots.error_rates(data.timeline)),
        ("Traffic", plots.request_rates(data.timeline)),
    ]
    figures += [(f"Evidence: {metric}", src) for metric, src in plots.evidence(data.evidence, data.marks)]
    figure_html = "".join(f"<img alt='{_e(title)}' src='{src}'>" for title, src in figures if src)
    commits = "".join(f"{_e(line)}\n" for line in data.commits)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>canaryflow rollout {_e(spec.rollout_id)}</title>
<style>{_STYLE}</style></head><body>
<h1>Rollout {_e(spec.rollout_id)} <span class="badge {_e(data.decision)}">{_e(data.decision)}</span></h1>
<p class="sub">model <b>{_e(spec.model)}</b>: canary version <b>{_e(spec.canary_version)}</b> against baseline
version <b>{_e(spec.baseline_version)}</b> · environment {_e(spec.environment)} · policy {_e(spec.policy)} ·
{data.duration_s:.0f} s</p>
<p>{_e(data.reason)}</p>
<h2>Verdicts</h2>{_steps_table(data)}
<h2>Evidence</h2>{figure_html or "<p>No traffic was observed.</p>"}
<h2>GitOps commits</h2><pre>{commits or "none"}</pre>
</body></html>
"""
