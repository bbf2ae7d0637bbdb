"""`GET /rollouts` and `GET /rollouts/{id}`: the store's rollouts, read-only, with their links."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Query, Request

from canaryflow.kernel.contracts.phases import RolloutPhase
from controller.api.api_context import ControllerContext
from controller.rollout.records import RolloutDetail, RolloutRecord


def rollout_routes(app: FastAPI, ctx: ControllerContext) -> None:
    store = ctx.store

    @app.get("/rollouts", response_model=list[RolloutRecord])
    def list_rollouts(
        request: Request,
        state: RolloutPhase | None = Query(default=None),
        model: str | None = Query(default=None),
        active: bool = Query(default=False),
        limit: int = Query(default=1000, ge=1, le=100_000),
    ) -> list[RolloutRecord]:
        records = store.rollouts(active_only=active, model=model)
        # Behind the console's gate a caller sees the models it holds a role on, as in the console.
        identity = getattr(request.state, "identity", None)
        visible = [r for r in records if identity is None or identity.can(r.model, "viewer")]
        return [r for r in visible if state is None or r.phase == state][-limit:]

    @app.get("/rollouts/{rollout_id}", response_model=RolloutDetail)
    def get_rollout(rollout_id: str) -> RolloutDetail:
        detail = store.detail(rollout_id)
        if detail is None:
            raise HTTPException(status_code=404, detail=f"no rollout {rollout_id!r}")
        if detail.workflow:
            detail.links["workflow"] = (
                ctx.workflow_link(detail.workflow) if ctx.workflow_link else detail.workflow
            )
        if detail.approval_url:
            detail.links["pull_request"] = detail.approval_url
        for commit in detail.commits:
            detail.links[f"commit:{commit.purpose}"] = commit.sha
        return detail
