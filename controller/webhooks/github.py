"""GitHub pull-request webhooks: a review or a merge releases (or refuses) a rollout's approval gate.

Headers: `X-GitHub-Event`, `X-GitHub-Delivery` (uuid), `X-Hub-Signature-256: sha256=<hex HMAC>` of the raw
body. GitHub sends no timestamp, so replays are caught by the remembered delivery id alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from controller.webhooks.common import delivery_id_from, json_object, require_header, require_secret
from controller.webhooks.events import ApprovalEvent, WebhookRejected
from controller.webhooks.signing import verify_github

EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
SIGNATURE_HEADER = "X-Hub-Signature-256"
HANDLED = ("pull_request_review", "pull_request", "ping")


def parse_github(headers: Mapping[str, str], body: bytes, secret: str | None) -> ApprovalEvent:
    secret = require_secret(secret, "GitHub")
    event = require_header(headers, EVENT_HEADER)
    delivery_id = delivery_id_from(headers, DELIVERY_HEADER)
    signature = require_header(headers, SIGNATURE_HEADER, status=401)
    if not verify_github(secret, body, signature):
        raise WebhookRejected(401, f"{SIGNATURE_HEADER} does not match the body")
    if event not in HANDLED:
        raise WebhookRejected(400, f"event {event!r} is not handled (handled: {', '.join(HANDLED)})")
    doc = json_object(body)
    if event == "ping":
        return ApprovalEvent(delivery_id=delivery_id, repository="", pr_number=0, pr_url="", outcome="none")
    pr = doc.get("pull_request")
    repo = doc.get("repository")
    if not isinstance(pr, dict) or not isinstance(pr.get("number"), int):
        raise WebhookRejected(422, "pull_request.number: missing")
    if not isinstance(repo, dict) or not isinstance(repo.get("full_name"), str):
        raise WebhookRejected(422, "repository.full_name: missing")
    sender = doc.get("sender") if isinstance(doc.get("sender"), dict) else {}
    return ApprovalEvent(
        delivery_id=delivery_id,
        repository=repo["full_name"],
        pr_number=pr["number"],
        pr_url=str(pr.get("html_url", "")),
        outcome=_outcome(event, doc, pr),
        actor=str((sender or {}).get("login", "")),
    )


def _outcome(event: str, doc: dict[str, Any], pr: dict[str, Any]) -> Literal["approved", "rejected", "none"]:
    action = doc.get("action")
    if event == "pull_request_review":
        review = doc.get("review") if isinstance(doc.get("review"), dict) else {}
        state = str((review or {}).get("state", "")).lower()
        if action == "submitted" and state == "approved":
            return "approved"
        if action == "submitted" and state == "changes_requested":
            return "rejected"
        return "none"
    if action == "closed":
        return "approved" if pr.get("merged") is True else "rejected"
    return "none"
