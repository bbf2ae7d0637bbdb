"""The analysis report as the body of a promotion pull request: what was compared, and each check."""

from __future__ import annotations

from canaryflow.kernel.analysis.forecast import forecast_lines
from canaryflow.kernel.types import Check, RolloutSpec, Verdict

_ICON = {"pass": "✅ pass", "fail": "❌ fail", "inconclusive": "⚠️ inconclusive"}


def _cell(value: object) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _evidence(check: Check) -> str:
    extras = check.model_extra or {}
    return ", ".join(f"{key}={_cell(value)}" for key, value in sorted(extras.items())) or "—"


def approval_report(spec: RolloutSpec, verdict: Verdict, plot: str | None = None) -> str:
    """Markdown: a summary, a table of checks with their statistics, the plot as an image if given."""
    lines = [
        f"## canaryflow: promote `{spec.model}` v{spec.canary_version} in `{spec.environment}`",
        "",
        "| rollout | baseline | canary | policy | decision |",
        "| --- | --- | --- | --- | --- |",
        f"| `{spec.rollout_id}` | v{spec.baseline_version} | v{spec.canary_version} | {_cell(spec.policy)} "
        f"| **{verdict.decision}** |",
        "",
        "### Checks",
        "",
        "| metric | verdict | reason | evidence |",
        "| --- | --- | --- | --- |",
    ]
    for check in verdict.checks:
        reason = _cell(check.reason) or "—"
        lines.append(f"| {_cell(check.metric)} | {_ICON[check.verdict]} | {reason} | {_evidence(check)} |")
    if not verdict.checks:
        lines.append("| — | — | no checks were run | — |")
    if verdict.forecast:  # from the step's first looks on: each check's expected time, the advice
        rate = float(verdict.forecast.get("rate_rps") or 0.0)
        lines += ["", "### Forecast", "", f"From the traffic the step saw ({rate:.3g} requests/s):", ""]
        lines += [f"- {_cell(line)}" for line in forecast_lines(verdict.forecast)]
    if plot:
        lines += ["", f"![canary vs baseline]({plot})"]
    lines += ["", "Approve to promote (merging lands the promotion commit); request changes to roll back."]
    return "\n".join(lines) + "\n"
