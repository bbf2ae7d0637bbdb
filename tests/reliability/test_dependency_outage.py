"""An outside dependency down never freezes the controller, shows as a waiting reason, and work resumes by
itself when it is back (issue 15, finding 5).

Outages are staged with a TCP relay (tests/reliability/relay.py) in front of the real MLflow server and
the GitHub API double: down, clients get "connection refused" as from a dead host; up, the same service
answers again with its state intact.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from mlflow.tracking import MlflowClient

from canaryflow.adapters.registry import MlflowRegistry
from canaryflow.app.wiring import bound_mlflow_calls
from canaryflow.kernel.contracts import metrics as names
from controller.rollout.records import RolloutRecord
from gitops.pullrequest import GitHubApproval, github_client
from tests.controller.harness import Steps, add_rollout, awaiting_approval, make, policy
from tests.gitops.github_double import GitHubServer

from .relay import Relay


def gauge(reconciler, dependency: str) -> float:
    text = reconciler.metrics.exposition().decode()
    line = f'{names.CONTROLLER_WAITING_ON_DEPENDENCY}{{dependency="{dependency}"}} '
    return float(next(x for x in text.splitlines() if x.startswith(line)).split()[-1])


def rollout(store, rid: str, model: str) -> str:
    now = time.time()
    store.create_rollout(
        RolloutRecord(
            id=rid, model=model, baseline_version="1", canary_version="2", created_at=now, updated_at=now
        )
    )
    return rid


def test_a_hung_dependency_holds_up_only_its_own_model(tmp_path):
    steps, release = Steps(), threading.Event()

    def run(node, step_input):
        if step_input.spec.model == "hung" and node.id == "set-weight-5":
            release.wait(30)  # a call into a dependency that does not answer
        return steps(node, step_input)

    reconciler, store, _, _ = make(tmp_path, run, policy(5, 50))
    reconciler.settings = reconciler.settings.model_copy(update={"tick_deadline_s": 0.2})
    hung, fine = rollout(store, "hung-v2-a", "hung"), rollout(store, "fine-v2-a", "fine")
    try:
        deadline = time.time() + 20
        while store.get(fine).phase != "promoted" and time.time() < deadline:
            reconciler.tick()
            time.sleep(0.05)
        assert store.get(fine).phase == "promoted"
        held = store.get(hung)
        # still in its call; the record (waiting reason included) says why if not
        assert held.phase == "canary" and held.step_index is None, held
    finally:
        release.set()
    deadline = time.time() + 20
    while store.get(hung).phase != "promoted" and time.time() < deadline:
        reconciler.tick()
        time.sleep(0.05)
    assert store.get(hung).phase == "promoted"  # resumed by itself once the call returned
    assert reconciler.close(10)


def test_a_metrics_outage_is_a_waiting_reason_and_a_gauge(tmp_path):
    down = "no data: Prometheus at http://127.0.0.1:9 unreachable (connection refused)"
    reconciler, store, _, _ = make(tmp_path, Steps({"analyze-5": [down] * 4 + ["ok"]}), policy(5))
    rid = add_rollout(store)
    reconciler.tick()
    assert store.get(rid).waiting_reason == down
    assert gauge(reconciler, "prometheus") == 1 and gauge(reconciler, "mlflow") == 0
    for _ in range(6):
        reconciler.tick()
    assert store.get(rid).phase == "promoted" and gauge(reconciler, "prometheus") == 0


def test_mlflow_down_then_back(tmp_path, mlflow_server):
    model = f"outage-{uuid.uuid4().hex[:6]}"
    client = MlflowClient(mlflow_server.tracking_uri)
    client.create_registered_model(model)
    for _ in range(2):
        client.create_model_version(model, source=f"s3://models/{model}")
    client.set_registered_model_alias(model, "champion", "1")
    host, port = mlflow_server.tracking_uri.removeprefix("http://").split(":")
    bound_mlflow_calls(2)
    with Relay(host, int(port)) as relay:
        reconciler, store, _, _ = make(tmp_path, Steps(), policy(5), registry=MlflowRegistry(relay.url))
        event = {
            "source": "mlflow",
            "delivery_id": "d-1",
            "change": "alias_set",
            "model": model,
            "version": "2",
            "alias": "challenger",
        }
        store.accept_delivery("mlflow", "d-1", "registry", event)
        relay.down()
        started = time.monotonic()
        reconciler.tick()
        assert time.monotonic() - started < 15  # the call gave up within its bound, no minutes of retries
        assert store.rollouts() == [] and store.pending_inbox()
        errors = reconciler.metrics.exposition().decode()
        assert f'{names.CONTROLLER_DEPENDENCY_ERRORS}_total{{dependency="mlflow"}} 1.0' in errors
        relay.up()
        for _ in range(4):
            reconciler.tick()
        assert [r.canary_version for r in store.rollouts()] == ["2"]
        assert store.get(store.rollouts()[0].id).phase == "promoted"


@pytest.fixture
def github():
    with GitHubServer("acme", "gitops") as server:
        server.double.roles["alice"] = "write"
        yield server


def test_github_down_then_back(tmp_path, github):
    port = int(github.url.rsplit(":", 1)[1])
    with Relay("127.0.0.1", port) as relay:
        gate = GitHubApproval(github_client(relay.url, "token"), "acme/gitops", "main")
        reconciler, store, rid = awaiting_approval(tmp_path, gate)
        relay.down()
        reconciler.tick()
        waiting = store.get(rid).waiting_reason or ""
        assert waiting.startswith("waiting for github: ") and "unreachable" in waiting
        assert gauge(reconciler, "github") == 1
        relay.up()
        github.double.add_review(int(store.get(rid).approval_id or 0), "alice", "APPROVED")
        for _ in range(3):
            reconciler.tick()
        assert store.get(rid).phase == "promoted" and gauge(reconciler, "github") == 0
