"""A whole rollout per KServe / Istio router on the local runner: real git remote, real MLflow registry,
real metrics exporter. The local runner applies nothing to a cluster, so what is checked is what each
step committed: the KServe and Istio documents in the GitOps repo at every commit."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from canaryflow.kernel.types import RolloutSpec
from gitops.yamlio import load_yaml
from tests.workflows.metrics_exporter import Exporter
from tests.workflows.rollout_support import (
    BASELINE_MS,
    drive,
    local_runner,
    register_versions,
    rollout_history,
    rollout_policy,
)
from tests.workflows.rollout_support import step_context as make_context


def _commits(remote: Path, rollout_id: str) -> list[tuple[str, str, str]]:
    """(sha, weight, decision) of the rollout's commits, oldest first."""
    return [
        (sha, weight, decision) for sha, rid, weight, decision in rollout_history(remote) if rid == rollout_id
    ]


def _overlay(remote: Path, sha: str, model: str) -> dict[str, Any]:
    """The documents of the production overlay at a commit, by file name."""
    folder = f"apps/{model}/overlays/production"
    git = ["git", "--git-dir", str(remote)]
    names = subprocess.run(
        [*git, "ls-tree", "--name-only", f"{sha}:{folder}"], capture_output=True, text=True
    )
    return {
        name: load_yaml(
            subprocess.run([*git, "show", f"{sha}:{folder}/{name}"], capture_output=True, text=True).stdout
        )
        for name in names.stdout.split()
    }


def _uri(container_owner: dict[str, Any]) -> str:
    args = container_owner["containers"][0]["args"]
    return str(args[args.index("--model-uri") + 1])


def _split(mode: str, docs: dict[str, Any], model: str) -> dict[str, int]:
    """Version -> weight as the committed KServe / Istio documents declare it."""
    if mode == "kserve-serverless":
        predictor = docs["inferenceservice.yaml"]["spec"]["predictor"]
        state = load_yaml(docs["rollout-state.yaml"]["data"]["routing.yaml"])
        canary = _uri(predictor).rsplit("/", 1)[1]
        percent = predictor.get("canaryTrafficPercent")
        if percent is None:  # stable: the predictor's revision takes everything
            return {canary: 100}
        if percent == 0:  # rolled back: all to the last rolled-out revision, the restored version
            return {v["version"]: v["weight"] for v in state["versions"]}
        baseline = [v["version"] for v in state["versions"] if v["role"] == "baseline"]
        return {baseline[0]: 100 - percent, canary: percent}
    if mode == "kserve-raw":
        backends = docs["httproute-predictors.yaml"]["spec"]["rules"][0]["backendRefs"]
        for backend in backends:
            version = backend["name"].removeprefix(f"{model}-v").removesuffix("-predictor")
            isvc = docs[f"inferenceservice-v{version}.yaml"]
            assert _uri(isvc["spec"]["predictor"]) == f"models:/{model}/{version}"
        return {
            b["name"].removeprefix(f"{model}-v").removesuffix("-predictor"): b["weight"] for b in backends
        }
    route = docs["virtualservice.yaml"]["spec"]["http"][-1]["route"]
    subsets = {s["name"] for s in docs["destinationrule.yaml"]["spec"]["subsets"]}
    assert {r["destination"]["subset"] for r in route} == subsets
    return {r["destination"]["subset"].removeprefix("v"): r["weight"] for r in route}


@pytest.mark.parametrize("mode", ["kserve-serverless", "kserve-raw", "istio"])
def test_router_promotes_then_rolls_back_with_the_right_commits(
    mode: str, tmp_path: Path, git_remote: Path, mlflow_server
) -> None:
    model = f"rt-{mode}"
    exporter = Exporter(model)
    try:
        v1, v2, v3 = register_versions(mlflow_server.tracking_uri, model, 3)
        policy = rollout_policy().model_copy(update={"traffic_mode": mode})
        context = make_context(
            git_remote, tmp_path / "clone", mlflow_server.tracking_uri, exporter.url, policy
        )
        runner = local_runner(tmp_path / "controller.db", context, policy)

        good = RolloutSpec(rollout_id=f"{mode}-1", model=model, baseline_version=v1, canary_version=v2)
        assert drive(runner, runner.submit(good), good, exporter, canary_ms=BASELINE_MS).phase == "Succeeded"
        bad = RolloutSpec(rollout_id=f"{mode}-2", model=model, baseline_version=v2, canary_version=v3)
        assert drive(runner, runner.submit(bad), bad, exporter, canary_ms=BASELINE_MS * 2).phase == "Failed"
    finally:
        exporter.close()

    promoted = _commits(git_remote, good.rollout_id)
    assert [(w, d) for _, w, d in promoted] == [("10", "canary"), ("50", "canary"), ("100", "promote")]
    splits = [_split(mode, _overlay(git_remote, sha, model), model) for sha, _, _ in promoted]
    assert splits == [{v1: 90, v2: 10}, {v1: 50, v2: 50}, {v2: 100}]

    rolled_back = _commits(git_remote, bad.rollout_id)
    assert [(w, d) for _, w, d in rolled_back] == [("10", "canary"), ("0", "rollback")]
    canary_docs, restored_docs = (_overlay(git_remote, sha, model) for sha, _, _ in rolled_back)
    assert _split(mode, canary_docs, model) == {v2: 90, v3: 10}
    assert _split(mode, restored_docs, model) == {v2: 100}
    if mode == "kserve-serverless":  # the previous model pinned, traffic straight back to its revision
        predictor = restored_docs["inferenceservice.yaml"]["spec"]["predictor"]
        assert predictor["canaryTrafficPercent"] == 0 and _uri(predictor) == f"models:/{model}/{v2}"
    else:  # the rejected version's workload left the overlay; Argo CD prunes it
        assert not any(f"v{v3}." in name for name in restored_docs)
    assert (
        MlflowClient(mlflow_server.tracking_uri).get_model_version_by_alias(model, "champion").version == v2
    )
