"""A rollout of a server none of canaryflow's code is in, end to end on one machine: Seldon MLServer
with its MLflow runtime (its own environment), started from the `mlserver` profile's committed
overlay, traffic split by HAProxy following the committed HTTPRoute, judged only on the metrics
MLServer exports itself (scraped by Prometheus): a good version is promoted, a slower one rolled back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from canaryflow.app.local.loadgen import LoadGenerator, V2Inference
from canaryflow.app.local.scorer_registry import FEATURES, register_scorer
from canaryflow.kernel.types import RolloutSpec
from tests.servers.rollout_env import MODEL, champion, mlserver_cluster, mlserver_policy
from tests.workflows.rollout_support import local_runner, rollout_history

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


def _run(runner, name: str, timeout_s: float = 240.0):
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = runner.reconcile(name)
        if status.phase not in ("Pending", "Running"):
            return status
        time.sleep(0.25)
    raise AssertionError(f"{name} did not finish in {timeout_s} s: {runner.status(name)}")


def _verdict(status, node: str) -> dict:
    nodes = {n.id: n for n in status.nodes}
    return json.loads(nodes[node].outputs["verdict_json"])


def test_mlserver_good_version_promoted_slow_version_rolled_back(
    mlflow_server, git_remote: Path, tmp_path: Path, mlserver_env: Path, haproxy: str, prometheus_binary_path
) -> None:
    uri = mlflow_server.tracking_uri
    # With MLServer's worker pool off (mlserver.LOCAL_SETTINGS) a request's work holds the server's
    # event loop: the load stays well below saturation (30/s of 5 ms at most 15% busy), so what is
    # judged is each version's own latency, not a queue.
    v1 = register_scorer(uri, MODEL, delay_ms=5)
    v2 = register_scorer(uri, MODEL, delay_ms=5)  # the same model, a new artefact: a good release
    v3 = register_scorer(uri, MODEL, delay_ms=25)  # five times the model's time: a bad release
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.set_registered_model_alias(MODEL, "champion", v1)
    policy = mlserver_policy()

    with mlserver_cluster(tmp_path, git_remote, uri, mlserver_env, policy, stable=v1) as cluster:
        runner = local_runner(tmp_path / "runner.db", cluster.context, policy)
        load = LoadGenerator(cluster.mesh.url, MODEL, rate=30, protocol=V2Inference(FEATURES)).start()
        try:
            good = RolloutSpec(rollout_id="scorer-v2", model=MODEL, baseline_version=v1, canary_version=v2,
                               policy=policy.name)  # fmt: skip
            status = _run(runner, runner.submit(good))
            assert status.phase == "Succeeded", status
            assert _verdict(status, "analyze-50")["decision"] == "promote"
            assert champion(uri) == v2

            bad = RolloutSpec(rollout_id="scorer-v3", model=MODEL, baseline_version=v2, canary_version=v3,
                              policy=policy.name)  # fmt: skip
            status = _run(runner, runner.submit(bad))
            assert status.phase == "Failed", status
            verdict = _verdict(status, "analyze-20")
            assert verdict["decision"] == "rollback"
            # Rolled back on the latency MLServer measured itself, not on a guard.
            failed = [c["metric"] for c in verdict["checks"] if c["verdict"] == "fail"]
            assert any(name.startswith("latency") for name in failed), verdict
            assert champion(uri) == v2
        finally:
            load.stop()
        # Steps do not drop requests through the proxy (a reload lets the old worker finish its own; what
        # the client itself sheds when this machine is saturated is not sent at all, so not counted);
        # the bad version served, then lost its traffic.
        assert load.stats.failed <= max(2, load.stats.sent // 1000), load.stats
        assert load.stats.by_version.get(v3, 0) > 0, load.stats

    commits = [(r[1], r[2], r[3]) for r in rollout_history(git_remote)]
    assert commits[-1] == ("scorer-v3", "0", "rollback"), commits
    assert ("scorer-v2", "100", "promote") in commits
