"""The actions API: `POST /rollouts/{id}/actions/{kind}` and `GET /rollouts/{id}/actions`.

The console's buttons call exactly these. The caller is the authenticated identity (an operator of
the rollout's model); the action id comes from the body's `action_id` or the `Idempotency-Key`
header, so a retried request finds the action it made and changes nothing (200 instead of 202).
"""

from __future__ import annotations

from fastapi import APIRouter, Body, Header, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from controller.actions import ActionRefused, ActionRequest, RolloutActions
from controller.auth.gate import require
from controller.rollout.actions import ActionKind, ActionRecord


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500, description="required for abort, promote and reject")
    action_id: str | None = Field(default=None, min_length=8, max_length=80, pattern=r"^[A-Za-z0-9._:-]+$")
    head_sha: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{7,64}$", description="approve/reject: the commit reviewed"
    )


def action_routes(actions: RolloutActions) -> APIRouter:
    router = APIRouter(tags=["actions"])

    @router.post("/rollouts/{rollout_id}/actions/{kind}", response_model=ActionRecord, status_code=202)
    async def act(
        request: Request,
        rollout_id: str,
        kind: ActionKind = Path(description="abort, promote, retry, approve, reject, pause or resume"),
        body: ActionBody = Body(default_factory=ActionBody),
        idempotency_key: str | None = Header(default=None, max_length=80),
    ) -> JSONResponse:
        record = actions.store.get(rollout_id)
        if record is None:
            raise HTTPException(404, f"no rollout {rollout_id!r}")
        who = require(request, record.model, "operator")
        wanted = ActionRequest(kind, who.user, body.reason, body.action_id or idempotency_key, body.head_sha)
        try:  # engine calls (Argo's stop/resume) and the model's lock: off the event loop
            action, created = await run_in_threadpool(actions.request, rollout_id, wanted)
        except ActionRefused as exc:
            raise HTTPException(exc.status, exc.message) from exc
        status = 409 if action.state == "refused" else 202 if created else 200
        return JSONResponse(action.model_dump(mode="json"), status_code=status)

    @router.get("/rollouts/{rollout_id}/actions", response_model=list[ActionRecord])
    def history(request: Request, rollout_id: str) -> list[ActionRecord]:
        record = actions.store.get(rollout_id)
        if record is None:
            raise HTTPException(404, f"no rollout {rollout_id!r}")
        require(request, record.model, "viewer")
        return actions.actions.of_rollout(rollout_id)

    return router
