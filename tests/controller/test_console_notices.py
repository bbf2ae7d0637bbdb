"""The notifications sent about a rollout: the log the notifier fills, through the API and on the page."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from canaryflow.kernel.contracts.notifications import NoticeDelivery, NoticeEvent
from controller.api.api_context import ControllerContext
from controller.api.controller_app import create_app
from controller.console.routes import mount
from controller.notice_log import NoticeLog
from controller.observability import ControllerMetrics
from controller.rollout.records import RolloutRecord
from tests.controller.harness import Steps, make, policy
from tests.controller.test_console_auth import STRANGER, VIEWER, auth_settings


def _delivery(event: NoticeEvent, outcome: str, at: float, error: str = "") -> NoticeDelivery:
    return NoticeDelivery.model_validate(
        {
            "channel": "json://hooks.example.com/x", "rollout_id": "minilm-v2-a", "event": event,
            "headline": f"{event.value} headline", "notice_at": at - 1, "at": at, "outcome": outcome,
            "attempts": 3 if error else 1, "error": error,
        }
    )  # fmt: skip


def _app(tmp_path, log: NoticeLog | None):
    reconciler, store, _, _ = make(tmp_path, Steps(), policy(5))
    settings = reconciler.settings.model_copy(update={"auth": auth_settings()})
    ctx = ControllerContext(settings=settings, store=store, metrics=ControllerMetrics(store), notice_log=log)
    app = create_app(ctx)
    mount(app, ctx, None)
    now = time.time()
    store.create_rollout(
        RolloutRecord(id="minilm-v2-a", model="minilm", baseline_version="1", canary_version="2",
                      created_at=now, updated_at=now)
    )  # fmt: skip
    return TestClient(app)


def test_the_notices_sent_are_listed_per_rollout_in_the_api_and_on_its_page(tmp_path):
    log = NoticeLog(tmp_path / "c.db")
    log.record(_delivery(NoticeEvent.STARTED, "delivered", 1_800_000_000.0))
    log.record(_delivery(NoticeEvent.ROLLED_BACK, "failed", 1_800_000_100.0, "HTTP 503 <from hook>"))
    log.record(
        _delivery(NoticeEvent.STARTED, "delivered", 1_800_000_000.0).model_copy(update={"rollout_id": "z"})
    )
    client = _app(tmp_path, log)
    viewer = {"Authorization": f"Bearer {VIEWER}"}
    answer = client.get("/rollouts/minilm-v2-a/notifications", headers=viewer)
    assert answer.status_code == 200
    assert [(n["event"], n["outcome"], n["attempts"]) for n in answer.json()] == [
        ("started", "delivered", 1),
        ("rolled_back", "failed", 3),
    ]
    assert client.get("/rollouts/nope/notifications", headers=viewer).status_code == 404
    assert client.get("/rollouts/minilm-v2-a/notifications").status_code == 401
    stranger = {"Authorization": f"Bearer {STRANGER}"}
    assert client.get("/rollouts/minilm-v2-a/notifications", headers=stranger).status_code == 403
    page = client.get("/console/rollouts/minilm-v2-a?fragment=1", headers=viewer).text
    assert page.count('<tr class="sent-') == 2 and "HTTP 503 &lt;from hook&gt;" in page
    assert "rolled_back: rolled_back headline" in page and "2027-01-15 08:00:00" in page


def test_without_a_notification_channel_the_page_says_nothing_is_sent(tmp_path):
    client = _app(tmp_path, None)
    viewer = {"Authorization": f"Bearer {VIEWER}"}
    assert client.get("/rollouts/minilm-v2-a/notifications", headers=viewer).json() == []
    assert (
        "no notification channel is configured"
        in client.get("/console/rollouts/minilm-v2-a", headers=viewer).text
    )
