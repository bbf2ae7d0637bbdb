"""Kill -9 the controller process at each point of a rollout, restart it, and check the outcome.

The controller runs as the real `canaryflow controller serve` process with the real local runner, git
remote (bare repo), MLflow registry and scrape metrics source; `CANARYFLOW_TEST_CRASH_AT` makes it die
by SIGKILL at a named point (including between a git push and the workflow store recording it). After
a restart without the fault, the rollout must reach the same decision with exactly one commit per
step and no step missing, and the registry must show that decision.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient

from gitops.history import read_log

from .conftest import signed_mlflow
from .live import wait_for
from .process import AUTH, Controller, controller_env, deliver
from .traffic import TrafficServer

SECRET = "crash-test-secret"
POLICY = """name: fast
traffic_mode: configmap
steps:
  - {weight: 10, min_duration_s: 0, min_samples: 50}
  - {weight: 50, min_duration_s: 0, min_samples: 50}
max_duration_s: 600
evaluate_every_s: 0.5
min_baseline_samples: 50
sample_ratio: {enabled: false}
"""


def git_trailers(remote: Path) -> list[dict[str, str]]:
    """The trailers of each rollout commit on main, newest first."""
    return [e.trailers for e in read_log(remote) if "Rollout-Id" in e.trailers]


@pytest.fixture
def world(mlflow_server, git_remote, tmp_path):
    model = f"crash-{uuid.uuid4().hex[:6]}"
    client = MlflowClient(mlflow_server.tracking_uri)
    client.create_registered_model(model)
    for _ in range(2):
        client.create_model_version(model, source=f"s3://models/{model}")
    client.set_registered_model_alias(model, "champion", "1")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    env = {
        **controller_env(SECRET, mlflow_server.tracking_uri, git_remote, tmp_path, policy),
        "HF_HUB_OFFLINE": "1",
    }
    return {"model": model, "client": client, "remote": git_remote, "env": env, "tmp": tmp_path}


CASES = [
    # (crash point, canary median ms, expected decision)
    ("after_event_stored", 10, "promoted"),
    ("after_rollout_created", 10, "promoted"),
    ("after_submit", 10, "promoted"),
    ("after_push", 10, "promoted"),  # first step's commit pushed, not yet recorded by the runner
    ("after_push@2", 10, "promoted"),  # second step's commit
    ("after_push@3", 10, "promoted"),  # the promotion commit
    ("after_engine_reconcile@2", 10, "promoted"),
    ("after_mirror@2", 10, "promoted"),
    ("after_push@2", 40, "rolled_back"),  # the rollback commit
    # Killed right after the first push with git's index.lock left in the clone, as a git killed with
    # its parent leaves it: the rollback still lands (it used to end `failed` with the canary live).
    ("after_push_locked", 40, "rolled_back"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("crash_at", "canary_ms", "decision"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_killed_controller_finishes_the_same_way(world, crash_at, canary_ms, decision):
    model, client, remote = world["model"], world["client"], world["remote"]
    with TrafficServer(model, {"1": 10.0, "2": float(canary_ms)}) as traffic:
        env = {**world["env"], "CANARYFLOW_METRICS_SCRAPE_TARGETS": json.dumps([traffic.url])}
        controller = Controller(world["tmp"], env)
        headers, body = signed_mlflow(
            {"name": model, "alias": "challenger", "version": "2"},
            secret=SECRET,
            delivery_id=str(uuid.uuid4()),
        )
        client.set_registered_model_alias(model, "challenger", "2")
        try:
            controller.start(crash_at=crash_at)
            deliver(controller.url, headers, body)
            assert controller.died_by_sigkill(), f"never reached {crash_at}:\n{controller.log_tail()}"
            controller.start()
            # The sender retries the same delivery (same id and signature) after the failed attempt.
            assert deliver(controller.url, headers, body) in (200, 202)
            rollouts = wait_for(
                lambda: httpx.get(controller.url + "/rollouts", headers=AUTH).json(), what="a rollout"
            )
            rid = rollouts[0]["id"]
            final = wait_for(
                lambda: (
                    (r := httpx.get(f"{controller.url}/rollouts/{rid}", headers=AUTH).json())["finished_at"]
                    and r
                ),
                timeout_s=90,
                what=f"rollout to finish:\n{controller.log_tail()}",
            )
        finally:
            controller.stop()
    assert len(rollouts) == 1
    assert final["phase"] == decision, final["transitions"]
    commits = [c for c in git_trailers(remote) if c["Rollout-Id"] == rid]
    keys = Counter((c["Traffic-Weight"], c["Decision"]) for c in commits)
    assert all(n == 1 for n in keys.values()), f"a step was committed twice: {keys}"
    steps = [(s["index"], s["weight"], s["status"]) for s in final["steps"]]
    if decision == "promoted":
        assert set(keys) == {("10", "canary"), ("50", "canary"), ("100", "promote")}
        assert steps == [(0, 10, "pass"), (1, 50, "pass")]
        assert client.get_model_version_by_alias(model, "champion").version == "2"
    else:
        assert ("100", "promote") not in keys and any(d == "rollback" for _, d in keys), keys
        assert steps[0][2] == "fail"
        assert client.get_model_version_by_alias(model, "champion").version == "1"
        assert client.get_model_version(model, "2").tags.get("canaryflow.rejected")
    store_shas = {c["sha"] for c in final["commits"]}
    assert len(store_shas) == len(commits), (final["commits"], commits)
    assert os.path.exists(world["tmp"] / "controller.db")
    assert not (world["tmp"] / "gitops-work" / ".git" / "index.lock").exists()


@pytest.mark.slow
def test_killed_right_after_resuming_an_approved_rollout(world):
    """The approval gate on a GitHub API double: approved by a review, the controller resumes the workflow
    and is killed before it records that; after the restart the rollout is promoted once, PR merged."""
    from tests.gitops.github_double import GitHubServer

    model, client, remote, tmp = world["model"], world["client"], world["remote"], world["tmp"]
    gated = tmp / "gated.yaml"
    gated.write_text(POLICY + "approval: {required: true, environments: [production]}\n")
    with TrafficServer(model, {"1": 10.0, "2": 10.0}) as traffic, GitHubServer("acme", "gitops") as github:
        env = {
            **world["env"],
            "CANARYFLOW_METRICS_SCRAPE_TARGETS": json.dumps([traffic.url]),
            "CANARYFLOW_CONTROLLER_TRIGGERS": json.dumps({"*": [{"kind": "alias", "policy": str(gated)}]}),
            "CANARYFLOW_GITOPS_GITHUB_URL": github.url,
            "CANARYFLOW_GITOPS_GITHUB_REPO": "acme/gitops",
            "CANARYFLOW_GITOPS_GITHUB_TOKEN": "test-token",
        }
        controller = Controller(tmp, env)
        headers, body = signed_mlflow({"name": model, "alias": "challenger", "version": "2"}, secret=SECRET)
        client.set_registered_model_alias(model, "challenger", "2")
        try:
            controller.start(crash_at="after_resume")
            assert deliver(controller.url, headers, body) == 202
            waiting = wait_for(
                lambda: [
                    r
                    for r in httpx.get(controller.url + "/rollouts", headers=AUTH).json()
                    if r["phase"] == "awaiting_approval"
                ],
                timeout_s=90,
                what=f"the approval request:\n{controller.log_tail()}",
            )[0]
            number = int(waiting["approval_id"])
            assert github.double.pulls[number]["state"] == "open"
            github.double.roles["alice"] = "write"
            github.double.add_review(number, "alice", "APPROVED")
            assert controller.died_by_sigkill(), f"never reached after_resume:\n{controller.log_tail()}"
            controller.start()
            final = wait_for(
                lambda: (
                    (r := httpx.get(f"{controller.url}/rollouts/{waiting['id']}", headers=AUTH).json())[
                        "finished_at"
                    ]
                    and r
                ),
                timeout_s=90,
                what=f"rollout to finish:\n{controller.log_tail()}",
            )
        finally:
            controller.stop()
        assert final["phase"] == "promoted", final["transitions"]
        assert github.double.pulls[number]["merged"] is True
    keys = Counter(
        (c["Traffic-Weight"], c["Decision"]) for c in git_trailers(remote) if c["Rollout-Id"] == final["id"]
    )
    assert keys == Counter({("10", "canary"): 1, ("50", "canary"): 1, ("100", "promote"): 1})
    assert client.get_model_version_by_alias(model, "champion").version == "2"
