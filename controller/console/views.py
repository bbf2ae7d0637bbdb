"""What the console's pages show, computed from the store: list rows, a rollout's page, a model's page.

Pure reads and plain data (dicts of strings and numbers) for the templates and the JSON endpoint, so
the list the page renders and the list the page polls are one computation.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from canaryflow.kernel.contracts.phases import RolloutPhase
from controller.auth.identity import Identity
from controller.rollout.records import RolloutDetail, RolloutRecord

SortKey = Literal["created_at", "updated_at", "model", "phase", "environment", "weight"]


class ListQuery(BaseModel):
    model: str = Field(default="", max_length=200, description="substring of the model name")
    phase: str = Field(default="", max_length=40)
    environment: str = Field(default="", max_length=100)
    active: bool = False
    sort: SortKey = "created_at"
    order: Literal["asc", "desc"] = "desc"
    page: int = Field(default=1, ge=1, le=100_000)
    per_page: int = Field(default=50, ge=1, le=500)


def age(seconds: float) -> str:
    """`42s`, `5m`, `3h`, `2d`: how long ago, in one short word."""
    s = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{int(s // size)}{unit}"
    return f"{int(s)}s"


def decision_of(record: RolloutRecord) -> str:
    return _DECISION.get(record.phase, "—")


# Where the traffic is once a rollout ended (the record keeps the last step's weight).
_P = RolloutPhase
_WEIGHT_AFTER: dict[str, int] = {_P.PROMOTED: 100, _P.WATCHING: 100, _P.ROLLED_BACK: 0, _P.SUPERSEDED: 0}
# How a finished rollout's decision reads in the list.
_DECISION: dict[str, str] = {
    p: p.value.replace("_", " ") for p in (_P.PROMOTED, _P.ROLLED_BACK, _P.SUPERSEDED, _P.FAILED)
}


def row(record: RolloutRecord, now: float) -> dict[str, Any]:
    step = "—" if record.step_index is None else str(record.step_index + 1)
    return {
        "id": record.id,
        "model": record.model,
        "environment": record.environment,
        "canary": record.canary_version,
        "baseline": record.baseline_version,
        "phase": record.phase,
        "step": step,
        "weight": _WEIGHT_AFTER.get(record.phase, record.weight),
        "age": age(now - record.created_at),
        "created_at": record.created_at,
        "decision": decision_of(record),
        "waiting": record.waiting_reason or "",
    }


def listing(records: list[RolloutRecord], who: Identity, query: ListQuery) -> dict[str, Any]:
    """The page of rows `who` may see, filtered and sorted as asked, with the total for paging."""
    wanted = [
        r
        for r in records
        if who.rank(r.model) >= 1
        and (not query.model or query.model.lower() in r.model.lower())
        and (not query.phase or r.phase == query.phase)
        and (not query.environment or r.environment == query.environment)
        and (not query.active or r.finished_at is None)
    ]
    wanted.sort(key=lambda r: (getattr(r, query.sort), r.id), reverse=query.order == "desc")
    start = (query.page - 1) * query.per_page
    now = time.time()
    return {
        "total": len(wanted),
        "page": query.page,
        "per_page": query.per_page,
        "pages": max(1, -(-len(wanted) // query.per_page)),
        "items": [row(r, now) for r in wanted[start : start + query.per_page]],
    }


def checks(verdict: dict[str, Any] | None) -> list[dict[str, str]]:
    """A step's checks in words, as the CLI's `--explain` prints them: metric, verdict, reason, evidence."""
    out = []
    for check in (verdict or {}).get("checks", []):
        extras = {k: v for k, v in check.items() if k not in ("metric", "verdict", "reason")}
        evidence = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(extras.items())
        )
        out.append(
            {
                "metric": str(check.get("metric", "")),
                "verdict": str(check.get("verdict", "")),
                "reason": str(check.get("reason", "")),
                "evidence": evidence or "—",
            }
        )
    return out


def evidence_svg(detail: RolloutDetail, width: int = 640, height: int = 160) -> str:
    """Per step, each check's verdict as a coloured mark over time (an inline SVG, no script)."""
    colours = {"pass": "#2e7d32", "fail": "#c62828", "inconclusive": "#f9a825"}
    points = [
        (step.started_at or detail.created_at, step.weight, c["verdict"], c["metric"])
        for step in detail.steps
        for c in checks(step.verdict)
    ]
    if not points:
        return ""
    t0 = min(p[0] for p in points)
    t1 = max(max(p[0] for p in points), detail.finished_at or time.time())
    span = max(1.0, t1 - t0)
    metrics = sorted({p[3] for p in points})
    lane = (height - 30) / max(1, len(metrics))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        'aria-label="check verdicts over time">'
    ]
    for i, metric in enumerate(metrics):
        y = 10 + lane * i + lane / 2
        parts.append(f'<text x="4" y="{y + 4:.0f}" font-size="11">{_esc(metric)}</text>')
    for t, weight, verdict, metric in points:
        x = 120 + (width - 140) * (t - t0) / span
        y = 10 + lane * metrics.index(metric) + lane / 2
        colour = colours.get(verdict, "#777")
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{colour}"><title>{_esc(metric)} at {weight}%: '
            f"{_esc(verdict)}</title></circle>"
        )
    parts.append(f'<text x="120" y="{height - 6}" font-size="11">0 s</text>')
    parts.append(f'<text x="{width - 60}" y="{height - 6}" font-size="11">{span:.0f} s</text>')
    parts.append("</svg>")
    return "".join(parts)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
