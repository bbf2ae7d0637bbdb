"""GitHub pull-request webhooks: a review or a merge releases (or refuses) a rollout's approval gate.

Headers: `X-GitHub-Event`, `X-GitHub-Delivery` (uuid), `X-Hub-Signature-256: sha256=<hex HMAC>` of the raw
body. GitHub signs the body but not the delivery id, so a captured delivery could be replayed under a
fresh id: the digest of the body is a replay key too, and a review submitted (or a pull request closed)
longer ago than `max_event_age_s` is refused. The event keeps the repository, number, head commit, actor
and time, so that the reconciler can bind it to exactly one rollout's pull request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from controller.webhooks.common import (
    delivery_id_from,
    json_object,
    require_header,
    require_secret,
    validation_reason,
)
from controller.webhooks.events import MAX_PR_NUMBER, ApprovalEvent, WebhookRejected
from controller.webhooks.signing import verify_github
from controller.webhooks.source import Delivery, ParseContext, body_key

EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
SIGNATURE_HEADER = "X-Hub-Signature-256"
HANDLED = ("pull_request_review", "pull_request", "ping")


class GitHubSource:
    name = "github"
    secret_setting = "github_webhook_secret"

    def parse(
        self, headers: Mapping[str, str], body: bytes, secret: str | None, ctx: ParseContext
    ) -> Delivery:
        event = parse_github(headers, body, secret, now_s=ctx.now_s, max_age_s=ctx.max_event_age_s)
        delivery_id = delivery_id_from(headers, DELIVERY_HEADER)
        return Delivery(event=event, keys=(delivery_id, body_key(body)))


def parse_github(
    headers: Mapping[str, str],
    body: bytes,
    secret: str | None,
    *,
    now_s: float | None = None,
    max_age_s: float | None = None,
) -> ApprovalEvent | None:
    """The verified review or merge (None for a ping); with `now_s` and `max_age_s`, refuses an event
    that happened longer ago than `max_age_s` (or later than now, beyond a minute of clock skew)."""
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
        return None
    pr = doc.get("pull_request")
    repo = doc.get("repository")
    number = pr.get("number") if isinstance(pr, dict) else None
    if type(number) is not int or not 1 <= number <= MAX_PR_NUMBER:
        raise WebhookRejected(422, "pull_request.number: missing or not an integer from 1 to 2^63-1")
    assert isinstance(pr, dict)
    if not isinstance(repo, dict) or not isinstance(repo.get("full_name"), str):
        raise WebhookRejected(422, "repository.full_name: missing")
    outcome, actor, at_field, head = _decision(event, doc, pr)
    at = _timestamp(at_field, "review.submitted_at" if event == "pull_request_review" else "pull_request")
    if outcome != "none" and now_s is not None and max_age_s is not None:
        if at is None:
            raise WebhookRejected(422, "review.submitted_at: missing (needed to refuse a replayed review)")
        if now_s - at > max_age_s or at - now_s > 60:
            raise WebhookRejected(
                401, f"stale delivery: the event is {now_s - at:+.0f} s old (at most {max_age_s:.0f} s)"
            )
    try:
        return ApprovalEvent(
            delivery_id=delivery_id,
            repository=repo["full_name"],
            pr_number=pr["number"],
            pr_url=_text(pr.get("html_url")),
            outcome=outcome,
            actor=actor,
            head_sha=head,
            at=at,
        )
    except ValidationError as exc:
        raise WebhookRejected(422, validation_reason(exc)) from exc


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _login(holder: Any) -> str:
    return _text(holder.get("login")) if isinstance(holder, dict) else ""


def _decision(
    event: str, doc: dict[str, Any], pr: dict[str, Any]
) -> tuple[Literal["approved", "rejected", "none"], str, Any, str]:
    """(outcome, actor, when, commit): a review is about the commit it was left on (`commit_id`), a merge
    or close about the pull request's head."""
    action = doc.get("action")
    head = pr.get("head")
    head_sha = _text(head.get("sha")) if isinstance(head, dict) else ""
    if event == "pull_request_review":
        review = doc.get("review") if isinstance(doc.get("review"), dict) else {}
        assert isinstance(review, dict)
        state = str(review.get("state", "")).lower()
        actor = _login(review.get("user")) or _login(doc.get("sender"))
        commit = _text(review.get("commit_id")) or head_sha
        if action == "submitted" and state == "approved":
            return "approved", actor, review.get("submitted_at"), commit
        if action == "submitted" and state == "changes_requested":
            return "rejected", actor, review.get("submitted_at"), commit
        return "none", actor, review.get("submitted_at"), commit
    if action == "closed":
        if pr.get("merged") is True:
            return (
                "approved",
                _login(pr.get("merged_by")) or _login(doc.get("sender")),
                pr.get("merged_at"),
                head_sha,
            )
        return "rejected", _login(doc.get("sender")), pr.get("closed_at"), head_sha
    return "none", _login(doc.get("sender")), None, head_sha


def _timestamp(value: Any, where: str) -> float | None:
    """GitHub's ISO 8601 time (`2026-11-23T12:00:00Z`) as unix seconds; anything else is refused."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise WebhookRejected(422, f"{where}: not an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise WebhookRejected(422, f"{where}: not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise WebhookRejected(422, f"{where}: a time without a zone")
    seconds = parsed.timestamp()
    return seconds if math.isfinite(seconds) else None
