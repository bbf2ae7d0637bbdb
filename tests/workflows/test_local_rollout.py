"""Whole rollouts on the local runner: real git remote, real MLflow registry, real metrics exporter.

Promote, roll back on a slower canary, and a runner process killed mid-DAG that a new one finishes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from pydantic import SecretStr

from canaryflow.kernel.contracts.directives import TAG_PROMOTE_NOW, TAG_RETRIED, Directive
from canaryflow.kernel.types import ApprovalRequest, RolloutSpec
from gitops.factory import approval_from_settings
from gitops.git import GitRepo
from gitops.gitops_settings import GitOpsSettings
from tests.gitops.github_double import GitHubServer
from tests.workflows.metrics_exporter import Exporter
from tests.workflows.rollout_support import (
    BASELINE_MS,
    drive,
    local_runner,
    register_versions,
    rollout_history,
    rollout_policy,
    rollout_trailers,
    step_context,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def exporter():
    server = Exporter("pending")
    yield server
    server.close()


def _setup(mlflow_server, exporter, model: str, versions: int = 2):
    exporter.model = model
    found = register_versions(mlflow_server.tracking_uri, model, versions)
    return found, MlflowClient(
        tracking_uri=mlflow_server.tracking_uri, registry_uri=mlflow_server.tracking_uri
    )


def test_promotes_a_healthy_canary(tmp_path, git_remote, mlflow_server, exporter):
    (v1, v2), client = _setup(mlflow_server, exporter, "wf-promote")
    spec = RolloutSpec(
        rollout_id="rp-1", model="wf-promote", baseline_version=v1, canary_version=v2, policy="fast"
    )
    policy = rollout_policy()
    context = step_context(git_remote, tmp_path / "clone", mlflow_server.tracking_uri, exporter.url, policy)
    runner = local_runner(tmp_path / "controller.db", context, policy)
    name = runner.submit(spec)

    status = drive(runner, name, spec, exporter, canary_ms=BASELINE_MS)

    assert status.phase == "Succeeded", status
    nodes = {n.id: n for n in status.nodes}
    assert [n.id for n in status.nodes if n.phase == "Succeeded"] == [
        "render", "set-weight-10", "wait-ready", "analyze-10", "set-weight-50", "wait-ready-50", "analyze-50",
        "promote",
    ]  # fmt: skip
    assert nodes["rollback"].phase == "Pending"
    assert nodes["analyze-50"].outputs["verdict"] == "pass"
    assert json.loads(nodes["analyze-50"].outputs["verdict_json"])["decision"] == "promote"
    history = rollout_history(git_remote)
    assert [(r[1], r[2], r[3]) for r in history] == [
        ("rp-1", "10", "canary"),
        ("rp-1", "50", "canary"),
        ("rp-1", "100", "promote"),
    ]
    shas = [nodes["set-weight-10"].outputs["commit_sha"], nodes["set-weight-50"].outputs["commit_sha"],
            nodes["promote"].outputs["commit_sha"]]  # fmt: skip
    assert shas == [r[0] for r in history]
    assert client.get_model_version_by_alias("wf-promote", "champion").version == v2
    assert client.get_model_version("wf-promote", v2).tags["canaryflow.promoted"] == "rp-1"
    assert client.get_model_version("wf-promote", v1).tags["canaryflow.retired"] == "rp-1"


def test_rolls_back_a_slower_canary(tmp_path, git_remote, mlflow_server, exporter):
    (v1, v2), client = _setup(mlflow_server, exporter, "wf-rollback")
    client.set_registered_model_alias("wf-rollback", "challenger", v2)
    spec = RolloutSpec(
        rollout_id="rb-1", model="wf-rollback", baseline_version=v1, canary_version=v2, policy="fast"
    )
    policy = rollout_policy()
    context = step_context(git_remote, tmp_path / "clone", mlflow_server.tracking_uri, exporter.url, policy)
    runner = local_runner(tmp_path / "controller.db", context, policy)
    name = runner.submit(spec)

    status = drive(runner, name, spec, exporter, canary_ms=BASELINE_MS * 2)

    assert status.phase == "Failed", status
    nodes = {n.id: n for n in status.nodes}
    assert nodes["analyze-10"].phase == "Failed" and nodes["analyze-10"].outputs["verdict"] == "fail"
    assert nodes["set-weight-50"].phase == "Omitted" and nodes["rollback"].phase == "Succeeded"
    assert status.message.startswith("analyze-10: fail at 10%")
    history = rollout_history(git_remote)
    assert [(r[1], r[2], r[3]) for r in history] == [("rb-1", "10", "canary"), ("rb-1", "0", "rollback")]
    assert nodes["rollback"].outputs["commit_sha"] == history[-1][0]
    assert client.get_model_version_by_alias("wf-rollback", "champion").version == v1
    with pytest.raises(Exception, match="challenger"):
        client.get_model_version_by_alias("wf-rollback", "challenger")
    assert "analyze-10" in client.get_model_version("wf-rollback", v2).tags["canaryflow.rejected"]


def test_a_new_runner_finishes_what_a_killed_one_started(tmp_path, git_remote, mlflow_server, exporter):
    (v1, v2), client = _setup(mlflow_server, exporter, "wf-restart")
    spec = RolloutSpec(
        rollout_id="rr-1", model="wf-restart", baseline_version=v1, canary_version=v2, policy="fast"
    )
    policy = rollout_policy()
    db = tmp_path / "controller.db"
    args = {
        "db": str(db),
        "remote": str(git_remote),
        "workdir": str(tmp_path / "clone-1"),
        "tracking_uri": mlflow_server.tracking_uri,
        "metrics_url": exporter.url,
        "spec": spec.model_dump(),
        "policy": policy.model_dump(mode="json"),
    }
    # The first runner process reconciles until it is killed; no traffic is served yet, so it stays
    # inside the first analysis step.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.workflows.rollout_process", json.dumps(args)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    context = step_context(git_remote, tmp_path / "clone-2", mlflow_server.tracking_uri, exporter.url, policy)
    runner = local_runner(db, context, policy)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                before = runner.status("canaryflow-rr-1")
            except KeyError:
                before = None
            if before is not None and before.node == "analyze-10":
                break
            assert proc.poll() is None, "the runner process ended early"
            time.sleep(0.1)
        else:
            raise AssertionError("the first runner never reached analyze-10")
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    started = {n.id: n for n in before.nodes}["analyze-10"].started_at

    status = drive(runner, "canaryflow-rr-1", spec, exporter, canary_ms=BASELINE_MS)

    assert status.phase == "Succeeded", status
    nodes = {n.id: n for n in status.nodes}
    assert nodes["analyze-10"].started_at == started  # the step's clock survived the restart
    history = rollout_history(git_remote)
    # One commit per step: nothing the first process did was done twice.
    assert [(r[2], r[3]) for r in history] == [("10", "canary"), ("50", "canary"), ("100", "promote")]
    assert nodes["set-weight-10"].outputs["commit_sha"] == history[0][0]
    assert client.get_model_version_by_alias("wf-restart", "champion").version == v2


def test_gated_rollout_waits_for_the_pull_request_approval(tmp_path, git_remote, mlflow_server, exporter):
    (v1, v2), client = _setup(mlflow_server, exporter, "wf-gated")
    spec = RolloutSpec(
        rollout_id="rg-1", model="wf-gated", baseline_version=v1, canary_version=v2, policy="fast"
    )
    policy = rollout_policy(approval=True)
    context = step_context(git_remote, tmp_path / "clone", mlflow_server.tracking_uri, exporter.url, policy)
    with GitHubServer("acme", "gitops") as github:
        settings = GitOpsSettings(
            remote_url=str(git_remote),
            workdir=tmp_path / "clone",
            github_url=github.url,
            github_repo="acme/gitops",
            github_token=SecretStr("gh-token"),
        )
        assert isinstance(context.gitops, GitRepo)
        gate = approval_from_settings(settings, context.gitops)
        context.approval = gate
        runner = local_runner(tmp_path / "controller.db", context, policy)
        name = runner.submit(spec)

        waiting = drive(runner, name, spec, exporter, canary_ms=BASELINE_MS, until="approval")
        nodes = {n.id: n for n in waiting.nodes}
        outputs = nodes["request-approval"].outputs
        approval = ApprovalRequest(id=outputs["approval_id"], head_sha=outputs["approval_head_sha"])
        pull = github.double.pulls[int(approval.id)]
        assert pull["head"]["ref"] == "canaryflow/rg-1" and "wf-gated" in pull["body"]
        assert gate.state(approval) == "pending"
        assert runner.reconcile(name).node == "approval"  # nothing moves without the approval
        assert client.get_model_version_by_alias("wf-gated", "champion").version == v1

        github.double.roles["reviewer"] = "write"
        github.double.add_review(int(approval.id), "reviewer", "APPROVED")
        assert gate.state(approval) == "approved"
        runner.resume(name)  # what the controller does on an approved pull request
        status = drive(runner, name, spec, exporter, canary_ms=BASELINE_MS)

    assert status.phase == "Succeeded", status
    assert ("PUT", f"/api/v3/repos/acme/gitops/pulls/{approval.id}/merge") in [
        (r.method, r.path) for r in github.double.requests
    ]
    assert client.get_model_version_by_alias("wf-gated", "champion").version == v2
    assert [(r[2], r[3]) for r in rollout_history(git_remote)][-1] == ("100", "promote")


def _submitted(tmp_path, git_remote, mlflow_server, exporter, model: str, rollout_id: str):
    """A rollout of `model`'s two registered versions under the fast policy, submitted to a local runner."""
    (v1, v2), client = _setup(mlflow_server, exporter, model)
    spec = RolloutSpec(
        rollout_id=rollout_id, model=model, baseline_version=v1, canary_version=v2, policy="fast"
    )
    policy = rollout_policy()
    context = step_context(git_remote, tmp_path / "clone", mlflow_server.tracking_uri, exporter.url, policy)
    runner = local_runner(tmp_path / "controller.db", context, policy)
    return spec, client, runner, runner.submit(spec)


def test_a_failed_step_retried_commits_again_with_who_and_why_and_goes_on(
    tmp_path, git_remote, mlflow_server, exporter
):
    spec, client, runner, name = _submitted(tmp_path, git_remote, mlflow_server, exporter, "wf-retry", "rr-1")
    v2 = spec.canary_version
    assert drive(runner, name, spec, exporter, canary_ms=BASELINE_MS * 2).phase == "Failed"

    # What the controller's retry action does: the directive for the steps, then the engine's retry.
    note = "retried by alice: the noisy neighbour is gone"
    directive = Directive(rollout_id="rr-1", note=note, weight=10)
    client.set_model_version_tag("wf-retry", v2, TAG_RETRIED, directive.model_dump_json())
    assert runner.retry_from(name, "set-weight-10", note)[:2] == ["set-weight-10", "wait-ready"]
    status = drive(runner, name, spec, exporter, canary_ms=BASELINE_MS)

    assert status.phase == "Succeeded", status
    nodes = {n.id: n for n in status.nodes}
    assert nodes["render"].phase == "Succeeded" and nodes["rollback"].phase == "Pending"
    trailers = [t for _sha, t in rollout_trailers(git_remote)]
    assert [(t["Traffic-Weight"], t["Decision"], t.get("Reason", "")) for t in trailers] == [
        ("10", "canary", ""),
        ("0", "rollback", trailers[1]["Reason"]),
        ("10", "canary", note),  # the GitOps history says who retried the step, and why
        ("50", "canary", ""),
        ("100", "promote", ""),
    ]
    assert client.get_model_version_by_alias("wf-retry", "champion").version == v2
    assert "canaryflow.rejected" not in client.get_model_version("wf-retry", v2).tags  # promoted now


def test_promote_now_told_through_the_registry_skips_the_running_analysis_and_what_follows(
    tmp_path, git_remote, mlflow_server, exporter
):
    """How an Argo pod learns of a promote-now: the steps read the rollout's directive each look."""
    spec, client, runner, name = _submitted(tmp_path, git_remote, mlflow_server, exporter, "wf-now", "rn-1")
    v2 = spec.canary_version
    assert drive(runner, name, spec, exporter, canary_ms=BASELINE_MS, until="analyze-10").node == "analyze-10"
    other = Directive(rollout_id="an-earlier-rollout", note="promote by mallory: old")
    client.set_model_version_tag("wf-now", v2, TAG_PROMOTE_NOW, other.model_dump_json())
    assert runner.reconcile(name).node == "analyze-10"  # another rollout's directive is not obeyed
    directive = Directive(rollout_id="rn-1", note="promote by alice: hotfix")
    client.set_model_version_tag("wf-now", v2, TAG_PROMOTE_NOW, directive.model_dump_json())

    status = drive(runner, name, spec, exporter, canary_ms=BASELINE_MS)

    assert status.phase == "Succeeded", status
    nodes = {n.id: n for n in status.nodes}
    for skipped in ("analyze-10", "set-weight-50", "wait-ready-50", "analyze-50"):
        assert nodes[skipped].message == "skipped: promote by alice: hotfix", skipped
    assert [(r[2], r[3]) for r in rollout_history(git_remote)] == [("10", "canary"), ("100", "promote")]
    assert client.get_model_version_by_alias("wf-now", "champion").version == v2
