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
from controller.rollout.records import RolloutRecord

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
