"""The controller's HTTP surface: webhook receivers, the rollout API, health and metrics.

The API's one changing endpoint, `PUT /models/{name}/drift/reference`, takes a bearer token
(`controller.api_token`, compared in constant time): webhooks prove themselves by their signatures,
a person or a script by the token; with no token configured the endpoint is off (403).

A webhook handler does as little as it can: bound the body, verify the sender's signature and
freshness, parse, then store the delivery in the inbox in one transaction (idempotent on its delivery
id) and answer. The reconcile loop, woken at once, turns the stored event into a rollout. So an
acknowledged delivery survives any crash after the acknowledgement, and a redelivery changes nothing.
"""

from __future__ import annotations

import hmac
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from canaryflow.kernel.errors import first_error
from canaryflow.kernel.guarded_input import InputRefused, parse_json
from canaryflow.kernel.rollout import RolloutPhase
from controller.drift import DriftMonitor
from controller.drift_reference import ReferenceRequest
from controller.faults import crash_point
from controller.observability import ControllerMetrics, event
from controller.rollout.records import RolloutDetail, RolloutRecord
from controller.rollout.store import RolloutStore
from controller.settings import ControllerSettings
from controller.webhooks.events import ApprovalEvent, WebhookRejected
from controller.webhooks.registry import SOURCES
from controller.webhooks.source import Delivery, ParseContext, WebhookSource


@dataclass
class ControllerContext:
    settings: ControllerSettings
    store: RolloutStore
    metrics: ControllerMetrics
    wake: Callable[[], None] = lambda: None
    workflow_link: Callable[[str], str] | None = None
    clock: Callable[[], float] = time.time
    extra_links: dict[str, str] = field(default_factory=dict)
    drift: DriftMonitor | None = None


async def _bounded_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise WebhookRejected(413, f"body of {declared} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise WebhookRejected(413, f"body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect as exc:  # gone, or cut off by the body deadline (inference.connection_guard)
        raise WebhookRejected(400, "the client closed the connection before its body was read") from exc
    return b"".join(chunks)


def create_app(ctx: ControllerContext) -> FastAPI:
    app = FastAPI(title="canaryflow controller", version="0.1.0")
    settings, store, metrics = ctx.settings, ctx.store, ctx.metrics

    async def receive(source: WebhookSource, request: Request) -> Response:
        name = source.name
        metrics.webhooks_received.labels(name).inc()
        try:
            body = await _bounded_body(request, settings.max_body_bytes)
            context = ParseContext(
                now_s=ctx.clock(),
                timestamp_tolerance_s=settings.timestamp_tolerance_s,
                max_event_age_s=settings.approval_max_age_s,
            )
            secret = settings.webhook_secret(source.secret_setting)
            delivery: Delivery = source.parse(dict(request.headers), body, secret, context)
        except WebhookRejected as exc:
            metrics.webhooks_rejected.labels(name, str(exc.status)).inc()
            event("webhook refused", source=name, status=exc.status, reason=exc.reason)
            return JSONResponse({"error": exc.reason}, status_code=exc.status)
        parsed = delivery.event
        if parsed is None:
            return JSONResponse({"status": "pong"}, status_code=200)
        kind = "approval" if isinstance(parsed, ApprovalEvent) else "registry"
        # One small SQLite insert (tens of microseconds): done on the event loop, because a hop through
        # the thread pool costs more than the write while the reconcile thread competes for the GIL.
        try:
            stored = store.accept_delivery(
                name, delivery.delivery_id, kind, parsed.model_dump(mode="json"), keys=delivery.keys
            )
        except sqlite3.Error as exc:  # disk full, I/O error: not acknowledged, so the sender retries
            event("webhook not stored", source=name, error=str(exc))
            return JSONResponse(
                {"error": f"delivery not stored ({exc}); retry later"},
                status_code=503,
                headers={"Retry-After": "30"},
            )
        crash_point("after_event_stored")
        if not stored:
            metrics.webhooks_duplicate.labels(name).inc()
            return JSONResponse({"status": "duplicate", "delivery_id": delivery.delivery_id}, status_code=200)
        event("webhook accepted", source=name, delivery_id=delivery.delivery_id, kind=kind)
        ctx.wake()
        return JSONResponse({"status": "accepted", "delivery_id": delivery.delivery_id}, status_code=202)

    def mount(source: WebhookSource) -> None:
        async def webhook(request: Request) -> Response:
            return await receive(source, request)

        app.add_api_route(
            f"/webhooks/{source.name}",
            webhook,
            methods=["POST"],
            name=f"{source.name}_webhook",
            summary=f"Deliveries of the {source.name} webhook source",
        )

    for source in SOURCES:
        mount(source)

    @app.get("/rollouts", response_model=list[RolloutRecord])
    def list_rollouts(
        state: RolloutPhase | None = Query(default=None),
        model: str | None = Query(default=None),
        active: bool = Query(default=False),
        limit: int = Query(default=1000, ge=1, le=100_000),
    ) -> list[RolloutRecord]:
        records = store.rollouts(active_only=active, model=model)
        return [r for r in records if state is None or r.phase == state][-limit:]

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

    @app.get("/models/{name}/drift")
    def get_drift(name: str) -> dict[str, Any]:
        if ctx.drift is None:
            raise HTTPException(status_code=404, detail="drift monitoring is off (controller.drift.enabled)")
        status = ctx.drift.status(name)
        if status is None:
            watched = ", ".join(ctx.drift.models()) or "none yet"
            raise HTTPException(status_code=404, detail=f"model {name!r} has no watched champion ({watched})")
        return status

    def authorize(request: Request) -> None:
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

    @app.put("/models/{name}/drift/reference")
    async def put_drift_reference(name: str, request: Request) -> dict[str, Any]:
        """Replace the champion's reference by a span of its prediction log (docs/monitoring.md)."""
        authorize(request)
        if ctx.drift is None:
            raise HTTPException(status_code=404, detail="drift monitoring is off (controller.drift.enabled)")
        try:
            body = await _bounded_body(request, settings.max_body_bytes)
        except WebhookRejected as exc:
            raise HTTPException(exc.status, exc.reason) from exc
        try:
            wanted = ReferenceRequest.model_validate(parse_json(body or b"null", "body", max_bytes=None))
        except InputRefused as exc:
            raise HTTPException(400, str(exc)) from exc
        except ValidationError as exc:
            raise HTTPException(422, first_error(exc, "body")) from exc
        try:  # reads and calibrates up to the policy's reference_max_samples: off the event loop
            status = await run_in_threadpool(ctx.drift.set_reference, name, wanted)
        except LookupError as exc:
            raise HTTPException(404, str(exc.args[0])) from exc
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        event("drift: reference set through the API", model=name, since=wanted.since, until=wanted.until)
        return status

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
