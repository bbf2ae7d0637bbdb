"""Each backend against a local HTTP receiver, speaking its real format: apprise's JSON webhook and
Slack plugins, CloudEvents in binary and structured mode; and the settings that choose them."""

from __future__ import annotations

import json

import pytest
from apprise.plugins.slack import NotifySlack
from cloudevents.core.bindings.http import HTTPMessage, from_http_event

from canaryflow.adapters.notify import NotificationSettings, notifier_from_settings
from canaryflow.adapters.notify.apprise_channel import AppriseChannel
from canaryflow.adapters.notify.base import DeliveryFailed
from canaryflow.adapters.notify.cloudevents_channel import CloudEventsChannel
from canaryflow.kernel.contracts.notifications import NoticeEvent
from tests.notify.conftest import notice
from tests.notify.receiver import Receiver


def test_json_webhook_carries_the_headline_verdicts_and_links(receiver: Receiver) -> None:
    channel = AppriseChannel(f"json://{receiver.url.removeprefix('http://')}/hooks/canaryflow")
    assert channel.describe().startswith("json://127.0.0.1")
    channel.send(notice())
    (request,) = receiver.wait_for(1)
    assert request.path == "/hooks/canaryflow"
    payload = json.loads(request.body)
    assert payload["title"] == "canaryflow: minilm (production): v3 rolled back at step 1 (20%), v2 serves"
    assert payload["type"] == "warning"
    assert "- gpu_memory: fail (canary shown worse than the tolerance)" in payload["message"]
    assert "pull request: https://github.com/org/gitops/pull/7" in payload["message"]
    assert "report: https://reports.example.com/minilm-v3-010c7772.html" in payload["message"]


def test_slack_plugin_posts_its_payload(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """apprise's own Slack plugin, its webhook host pointed at the local receiver."""
    monkeypatch.setattr(NotifySlack, "webhook_url", f"{receiver.url}/services")
    receiver.reply = b"ok"  # what Slack's incoming webhooks answer
    channel = AppriseChannel("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7/#rollouts")
    assert "TIiajkdnlazkcOXrIdevi7" not in channel.describe()  # the token stays out of logs
    channel.send(notice(NoticeEvent.PROMOTED))
    (request,) = receiver.wait_for(1)
    assert request.path == "/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7"
    payload = json.loads(request.body)
    assert payload["channel"] == "#rollouts"
    (attachment,) = payload["attachments"]
    assert attachment["title"] == "canaryflow: minilm (production): v3 promoted (was v2)"
    assert "gpu_memory" in attachment["text"]


def test_refused_delivery_raises(receiver: Receiver) -> None:
    receiver.fail_first = 1
    channel = AppriseChannel(f"json://{receiver.url.removeprefix('http://')}/x")
    with pytest.raises(DeliveryFailed):
        channel.send(notice())


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_cloudevents_in_both_modes(receiver: Receiver, mode: str) -> None:
    channel = CloudEventsChannel(f"{receiver.url}/events", mode=mode, source="/canaryflow/test")  # type: ignore[arg-type]
    channel.send(notice())
    (request,) = receiver.wait_for(1)
    if mode == "binary":
        assert request.headers["ce-type"] == "io.canaryflow.rollout.rolled_back"
    else:
        assert request.headers["content-type"].startswith("application/cloudevents+json")
    headers = {k.lower(): v for k, v in request.headers.items()}
    event = from_http_event(HTTPMessage(headers=headers, body=request.body))
    assert event.get_type() == "io.canaryflow.rollout.rolled_back"
    assert event.get_source() == "/canaryflow/test" and event.get_subject() == "minilm-v3-010c7772"
    assert event.get_id() == "minilm-v3-010c7772.rolled_back.1"
    data = event.get_data()
    assert isinstance(data, dict)
    assert data["event"] == "rolled_back" and data["canary_version"] == "3" and data["step"] == 1
    first = {"metric": "gpu_memory", "verdict": "fail", "reason": "canary shown worse than the tolerance"}
    assert data["checks"][0] == first
    assert data["links"]["pull_request"].endswith("/pull/7") and data["headline"]


def test_cloudevents_non_2xx_is_a_failure() -> None:
    refusing = Receiver(status=400)
    try:
        with pytest.raises(DeliveryFailed, match="HTTP 400"):
            CloudEventsChannel(f"{refusing.url}/events").send(notice())
    finally:
        refusing.stop()


def test_settings_keep_urls_secret_and_build_every_channel(receiver: Receiver, monkeypatch) -> None:
    host = receiver.url.removeprefix("http://")
    monkeypatch.setenv("CANARYFLOW_NOTIFY_URLS", f"json://{host}/a, json://{host}/b")
    monkeypatch.setenv("CANARYFLOW_NOTIFY_CLOUDEVENTS_URL", f"{receiver.url}/events")
    monkeypatch.setenv("CANARYFLOW_NOTIFY_EVENTS", '["promoted", "rolled_back"]')
    settings = NotificationSettings()
    assert host not in repr(settings)
    notifier = notifier_from_settings(settings)
    assert notifier is not None and len(notifier.stats()) == 3
    notifier.notify(notice(NoticeEvent.STARTED))  # not one of the events asked for
    notifier.notify(notice(NoticeEvent.PROMOTED))
    paths = sorted(r.path for r in receiver.wait_for(3))
    notifier.close(5)
    assert paths == ["/a", "/b", "/events"]
    assert notifier_from_settings(NotificationSettings(urls=None, cloudevents_url=None)) is None


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"notify.urls: nosuch://"):
        notifier_from_settings(NotificationSettings(urls="nosuch://x"))
    with pytest.raises(ValueError, match=r"notify\.cloudevents_url"):
        notifier_from_settings(NotificationSettings(cloudevents_url="ftp://x"))
    with pytest.raises(ValueError, match=r"report: .https://x/\{nope\}. may use only"):
        NotificationSettings(links={"report": "https://x/{nope}"})
