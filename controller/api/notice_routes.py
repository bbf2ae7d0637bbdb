"""`GET /rollouts/{id}/notifications`: the notices sent about a rollout, as each settled per channel."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Query

from canaryflow.kernel.contracts.notifications import NoticeDelivery
from controller.api.api_context import ControllerContext


def notice_routes(app: FastAPI, ctx: ControllerContext) -> None:
    @app.get("/rollouts/{rollout_id}/notifications", response_model=list[NoticeDelivery])
    def notifications(
        rollout_id: str, limit: int = Query(default=500, ge=1, le=5000)
    ) -> list[NoticeDelivery]:
        if ctx.store.get(rollout_id) is None:
            raise HTTPException(status_code=404, detail=f"no rollout {rollout_id!r}")
        return ctx.notice_log.of_rollout(rollout_id, limit) if ctx.notice_log is not None else []
