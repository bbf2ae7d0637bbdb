"""`POST /webhooks/<source>`: one route per registered webhook source (controller/webhooks/registry.py).

A handler does as little as it can: bound the body, verify the sender's signature and freshness,
parse, then store the delivery in the inbox in one transaction (idempotent on its delivery id) and
answer. The reconcile loop, woken at once, turns the stored event into a rollout. So an acknowledged
delivery survives any crash after the acknowledgement, and a redelivery changes nothing.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from canaryflow.adapters.database import DatabaseError
from controller.api.api_context import ControllerContext
from controller.api.request_body import bounded_body
from controller.faults import crash_point
from controller.observability import event
from controller.webhooks.events import ApprovalEvent, WebhookRejected
from controller.webhooks.registry import SOURCES
from controller.webhooks.source import Delivery, ParseContext, WebhookSource


def webhook_routes(app: FastAPI, ctx: ControllerContext) -> None:
    for source in SOURCES:
        _mount(app, ctx, source)


def _mount(app: FastAPI, ctx: ControllerContext, source: WebhookSource) -> None:
    async def webhook(request: Request) -> Response:
        return await _receive(ctx, source, request)

    app.add_api_route(
        f"/webhooks/{source.name}",
        webhook,
        methods=["POST"],
        name=f"{source.name}_webhook",
        summary=f"Deliveries of the {source.name} webhook source",
    )


async def _receive(ctx: ControllerContext, source: WebhookSource, request: Request) -> Response:
    settings, store, metrics, name = ctx.settings, ctx.store, ctx.metrics, source.name
    metrics.webhooks_received.labels(name).inc()
    try:
        body = await bounded_body(request, settings.max_body_bytes)
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
    # One small insert (tens of microseconds in SQLite): done on the event loop, because a hop through
    # the thread pool costs more than the write while the reconcile thread competes for the GIL.
    try:
        stored = store.accept_delivery(
            name, delivery.delivery_id, kind, parsed.model_dump(mode="json"), keys=delivery.keys
        )
    except DatabaseError as exc:  # disk full, I/O error, server away: not acknowledged, so the sender retries
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
