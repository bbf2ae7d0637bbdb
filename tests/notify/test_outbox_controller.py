"""The outbox end to end, through the real `canaryflow controller serve`: a rollout's notice queued for a
receiver that is down survives a SIGKILL of the whole controller and arrives once, unchanged, after the
restart on the same store; and a corrupt outbox shows on the controller's /metrics.

The controller runs with the real MLflow registry, git remote and local runner (as the crash tests do);
only the `started` notice is sent, so what the receiver gets is exactly the notice queued before the kill.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from mlflow.tracking import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from canaryflow.app.wiring import notify_outbox_path
from canaryflow.kernel.contracts import metrics as names
from controller.notice_outbox import NoticeOutbox
from tests.controller.conftest import signed_mlflow
from tests.controller.live import wait_for
from tests.controller.process import AUTH, Controller, controller_env, deliver
from tests.notify.receiver import Receiver
from tests.support.net import free_port

SECRET = "outbox-test-secret"
POLICY = """name: fast
traffic_mode: configmap
steps:
  - {weight: 10, min_duration_s: 0, min_samples: 50}
max_duration_s: 600
evaluate_every_s: 0.5
sample_ratio: {enabled: false}
"""
DURABLE = names.CONTROLLER_NOTICE_OUTBOX_DURABLE + "{}"  # the sample, keyed as `_metrics` keys it


@pytest.fixture
def receiver():
    server = Receiver(fail_first=10**6)  # answers 503: the receiver is down until the test says
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def model(mlflow_server) -> str:
    """A registered model whose v1 is champion and v2 is about to become challenger."""
    name = f"outbox-{uuid.uuid4().hex[:6]}"
    client = MlflowClient(mlflow_server.tracking_uri)
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, source=f"s3://models/{name}")
    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", "2")
    return name


@pytest.fixture
def controller(mlflow_server, git_remote, tmp_path, receiver, model):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    env = {
        **controller_env(SECRET, mlflow_server.tracking_uri, git_remote, tmp_path, policy),
        # No inference server: the first step's analysis waits, and the rollout sends nothing more.
        "CANARYFLOW_METRICS_SCRAPE_TARGETS": json.dumps([f"http://127.0.0.1:{free_port()}/metrics"]),
        "CANARYFLOW_NOTIFY_CLOUDEVENTS_URL": receiver.url,
        "CANARYFLOW_NOTIFY_EVENTS": json.dumps(["started"]),
        "CANARYFLOW_NOTIFY_MAX_ATTEMPTS": "20",
        "CANARYFLOW_NOTIFY_BACKOFF_S": "0.1",
        "CANARYFLOW_NOTIFY_MAX_BACKOFF_S": "0.5",
    }
    process = Controller(tmp_path, env)
    try:
        yield process
    finally:  # nothing is checked after the test: no clean stop to wait for
        if process.proc is not None and process.proc.alive():
            process.kill()


def _promote(controller: Controller, model: str) -> None:
    """The registry's webhook for the challenger alias: the controller creates and starts a rollout."""
    headers, body = signed_mlflow({"name": model, "alias": "challenger", "version": "2"}, secret=SECRET)
    assert deliver(controller.url, headers, body) == 202


def _metrics(controller: Controller) -> dict[str, float]:
    text = httpx.get(controller.url + "/metrics", timeout=5).text
    return {
        sample.name + json.dumps(sample.labels, sort_keys=True): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_notice_queued_when_the_controller_is_killed_arrives_once_after_the_restart(
    controller, receiver, model
):
    controller.start()
    _promote(controller, model)
    tried = wait_for(lambda: receiver.refused[:1], timeout_s=60, what="the started notice's first attempt")
    controller.kill()  # the notice is queued, retried against a receiver answering 503
    before = len(receiver.refused)

    controller.start()  # same store, the receiver still down
    wait_for(lambda: len(receiver.refused) > before, what="the restarted controller's first attempt")
    receiver.refuse(0)  # the receiver is back
    (got,) = receiver.wait_for(1, timeout_s=20)

    rollouts = httpx.get(controller.url + "/rollouts", headers=AUTH).json()
    assert len(rollouts) == 1
    assert got.headers["ce-id"] == tried[0].headers["ce-id"] == f"{rollouts[0]['id']}.started.0"
    assert got.body == tried[0].body  # the notice itself, not a new one built after the restart
    wait_for(lambda: _waiting(controller) == {}, what="the delivered notice to leave the outbox")
    assert len(receiver.requests) == 1
    assert '"notifications resumed from the outbox"' in controller.log_tail(200)
    held = _metrics(controller)
    assert held[DURABLE] == 1.0
    assert held[_memory_only(receiver)] == 0.0


def _memory_only(receiver: Receiver) -> str:
    channel = {names.CHANNEL_LABEL: f"cloudevents+{receiver.url}"}
    return names.counter_sample(names.CONTROLLER_NOTICES_MEMORY_ONLY) + json.dumps(channel)


def _waiting(controller: Controller) -> dict[str, int]:
    outbox = NoticeOutbox(notify_outbox_path(controller.db))
    try:
        return outbox.channels()
    finally:
        outbox.close()


def test_a_corrupt_outbox_shows_on_the_metrics_and_notices_go_on_from_memory(controller, receiver, model):
    path = notify_outbox_path(controller.db)
    path.write_bytes(b"not a database, " * 512)
    receiver.refuse(0)
    controller.start()
    assert _metrics(controller)[DURABLE] == 0.0
    _promote(controller, model)
    (got,) = receiver.wait_for(1, timeout_s=60)
    held = _metrics(controller)
    assert held[DURABLE] == 0.0
    assert held[_memory_only(receiver)] == 1.0
    assert got.headers["ce-type"] == "io.canaryflow.rollout.started"
    log = (controller.tmp / "controller.log").read_text()
    assert log.count("notification outbox unusable") == 1
    assert path.read_bytes() == b"not a database, " * 512  # left as it was, for an operator to look at
