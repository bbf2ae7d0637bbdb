"""`GET /models/{name}/drift` and `PUT /models/{name}/drift/reference`: the drift monitor's view of a
champion, and the API's one changing endpoint.

The PUT takes a bearer token (`controller.api_token`, compared in constant time): webhooks prove
themselves by their signatures, a person or a script by the token; with no token configured the
endpoint is off (403).
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from canaryflow.kernel.errors import first_error
from canaryflow.kernel.guarded_input import InputRefused, parse_json
from controller.api.api_context import ControllerContext
from controller.api.request_body import bounded_body
from controller.controller_settings import ControllerSettings
from controller.drift_monitor import DriftMonitor
from controller.drift_reference import ReferenceRequest
from controller.observability import event
from controller.webhooks.events import WebhookRejected


def drift_routes(app: FastAPI, ctx: ControllerContext) -> None:
    settings = ctx.settings

    @app.get("/models/{name}/drift")
    def get_drift(name: str) -> dict[str, Any]:
        drift = _monitor(ctx)
        status = drift.status(name)
        if status is None:
            watched = ", ".join(drift.models()) or "none yet"
            raise HTTPException(status_code=404, detail=f"model {name!r} has no watched champion ({watched})")
        return status

    @app.put("/models/{name}/drift/reference")
    async def put_drift_reference(name: str, request: Request) -> dict[str, Any]:
        """Replace the champion's reference by a span of its prediction log (docs/monitoring.md)."""
        _authorize(settings, request)
        drift = _monitor(ctx)
        try:
            body = await bounded_body(request, settings.max_body_bytes)
        except WebhookRejected as exc:
            raise HTTPException(exc.status, exc.reason) from exc
        try:
            wanted = ReferenceRequest.model_validate(parse_json(body or b"null", "body", max_bytes=None))
        except InputRefused as exc:
            raise HTTPException(400, str(exc)) from exc
        except ValidationError as exc:
            raise HTTPException(422, first_error(exc, "body")) from exc
        try:  # reads and calibrates up to the policy's reference_max_samples: off the event loop
            status = await run_in_threadpool(drift.set_reference, name, wanted)
        except LookupError as exc:
            raise HTTPException(404, str(exc.args[0])) from exc
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        event("drift: reference set through the API", model=name, since=wanted.since, until=wanted.until)
        return status


def _monitor(ctx: ControllerContext) -> DriftMonitor:
    if ctx.drift is None:
        raise HTTPException(status_code=404, detail="drift monitoring is off (controller.drift.enabled)")
    return ctx.drift


def _authorize(settings: ControllerSettings, request: Request) -> None:
    token = settings.api_token
    if token is None:
        raise HTTPException(403, "changes through the API are off: set CANARYFLOW_CONTROLLER_API_TOKEN")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise HTTPException(
            401, "Authorization: a Bearer token equal to controller.api_token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
