"""Reading a request body with a size bound, for the routes that take one (webhooks, drift reference)."""

from __future__ import annotations

from fastapi import Request
from starlette.requests import ClientDisconnect

from controller.webhooks.events import WebhookRejected


async def bounded_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as the declared or the streamed size passes `limit` bytes."""
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
