"""A whole rollout through its bake and a watch after promotion that finds a regression.

Real git remote, real MLflow registry, real metrics exporter on the local runner: the canary is as
fast as its baseline through both steps and the bake, is promoted, then serves twice as slowly as
the previous champion's record; the watch fails, and the exit handler restores the previous
version in git, the `champion` alias in the registry and the versions' tags.
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

from canaryflow.kernel.types import RolloutSpec, WorkflowStatus
from tests.workflows.metrics_exporter import Exporter
from tests.workflows.rollout_support import (
    BASELINE_MS,
    local_runner,
    register_versions,
    rollout_policy,
    step_context,
)
from workflows.local.runner import LocalRunner
from workflows.steps.release import TAG_PROMOTED, TAG_REJECTED, TAG_RETIRED


def _tree(remote: Path, model: str) -> str:
    """The tree id of the model's manifests on main: equal trees, equal files."""
    out = subprocess.run(
        ["git", "--git-dir", str(remote), "rev-parse", "main:"], capture_output=True, text=True, check=True
    )
    listing = subprocess.run(
        ["git", "--git-dir", str(remote), "ls-tree", "-r", out.stdout.strip()],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "\n".join(line for line in listing.splitlines() if model in line)


def _drive(
    runner: LocalRunner, name: str, spec: RolloutSpec, exporter: Exporter
) -> tuple[WorkflowStatus, list[str]]:
    """Serves like production would: both versions while the canary is analysed or bakes, only the new
    champion (slower) once promoted. Returns the final status and the nodes seen running."""
    rng = random.Random(3)
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = runner.reconcile(name)
        if status.phase not in ("Pending", "Running"):
            return status, seen
        node = status.node or ""
        if node and (not seen or seen[-1] != node):
            seen.append(node)
        if node.startswith("analyze-") or node == "bake":
            exporter.serve(spec.baseline_version, 300, BASELINE_MS, rng)
            exporter.serve(spec.canary_version, 300, BASELINE_MS, rng)
        elif node == "watch":
            exporter.serve(spec.canary_version, 300, BASELINE_MS * 2, rng)
        time.sleep(0.1)
    raise AssertionError(f"{name} did not finish: {runner.status(name)}")


def test_watch_after_promotion_rolls_back_to_the_previous_champion(tmp_path, git_remote, mlflow_server):
    exporter = Exporter("wf-watch")
    try:
        v1, v2 = register_versions(mlflow_server.tracking_uri, "wf-watch", 2)
        policy = rollout_policy().model_copy(update={"bake_s": 1.0, "watch_s": 1.5})
        context = step_context(
            git_remote, tmp_path / "clone", mlflow_server.tracking_uri, exporter.url, policy
        )
        # v1 is the champion in git too: promoted by an earlier rollout.
        earlier = RolloutSpec(rollout_id="w-0", model="wf-watch", baseline_version=v1, canary_version=v1)
        context.gitops.commit_step(earlier, 100, "promote")
        context.registry.set_version_tag("wf-watch", v1, TAG_PROMOTED, "w-0")
        tree_before = _tree(git_remote, "wf-watch")
        spec = RolloutSpec(
            rollout_id="w-1", model="wf-watch", baseline_version=v1, canary_version=v2, policy="fast"
        )
        runner = local_runner(tmp_path / "controller.db", context, policy)
        status, seen = _drive(runner, runner.submit(spec), spec, exporter)
    finally:
        exporter.close()

    nodes = {n.id: n for n in status.nodes}
    assert status.phase == "Failed", status
    assert [n for n in seen if n in ("bake", "watch")] == ["bake", "watch"]
    assert nodes["bake"].phase == "Succeeded" and nodes["bake"].outputs["verdict"] == "pass"
    assert nodes["promote"].phase == "Succeeded"
    assert nodes["watch"].phase == "Failed" and nodes["watch"].outputs["verdict"] == "fail"
    assert "latency p50" in nodes["watch"].message and "ms vs" in nodes["watch"].message
    assert nodes["rollback"].phase == "Succeeded"
    # Git: promoted, then a rollback commit restoring v1's manifests exactly.
    assert _tree(git_remote, "wf-watch") == tree_before
    client = context.registry
    assert client.version_for_alias("wf-watch", "champion") == v1
    # Registry tags: the rolled-back champion is rejected and no longer promoted; v1 is promoted again
    # (its own rollout's tag) and not retired.
    v1_tags, v2_tags = client.version_tags("wf-watch", v1), client.version_tags("wf-watch", v2)
    assert TAG_PROMOTED not in v2_tags and "watch" in v2_tags[TAG_REJECTED], v2_tags
    assert v1_tags.get(TAG_PROMOTED) == "w-0" and TAG_RETIRED not in v1_tags, v1_tags
