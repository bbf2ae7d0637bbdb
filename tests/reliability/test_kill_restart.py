"""Kill -9 mid-push with git's lock left behind, restart, and the rollout still ends the same way.

The machinery of tests/controller/test_crash_restart.py (the real controller process, local runner,
bare git remote, MLflow registry): `after_push_locked` kills the process right after a push with
`.git/index.lock` left in the working clone, as a git killed with its parent leaves it. Before issue 15
the restarted rollout ended `failed` with the canary live at 10% and no rollback commit.
"""

from __future__ import annotations

import uuid
from collections import Counter

import httpx
import pytest

from tests.controller.conftest import signed_mlflow
from tests.controller.live import wait_for
from tests.controller.test_crash_restart import SECRET, Controller, deliver, git_trailers, world  # noqa: F401
from tests.controller.traffic import TrafficServer

CASES = [
    # (crash point, canary median ms, expected decision, expected (weight, decision) commits); the other
    # kill points (after the promotion and rollback pushes, @2/@3) pass too but cost ~50 s each.
    ("after_push_locked", 40, "rolled_back", {("10", "canary"), ("0", "rollback")}),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("crash_at", "canary_ms", "decision", "commits"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES]
)
def test_killed_mid_push_with_a_lock_left_ends_the_same_way(world, crash_at, canary_ms, decision, commits):  # noqa: F811
    model, client, remote = world["model"], world["client"], world["remote"]
    with TrafficServer(model, {"1": 10.0, "2": float(canary_ms)}) as traffic:
        env = {**world["env"], "CANARYFLOW_METRICS_SCRAPE_TARGETS": f'["{traffic.url}"]'}
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
            assert (world["tmp"] / "gitops-work" / ".git" / "index.lock").exists()
            controller.start()
            rollouts = wait_for(lambda: httpx.get(controller.url + "/rollouts").json(), what="a rollout")
            rid = rollouts[0]["id"]
            final = wait_for(
                lambda: (r := httpx.get(f"{controller.url}/rollouts/{rid}").json())["finished_at"] and r,
                timeout_s=90,
                what=f"rollout to finish:\n{controller.log_tail()}",
            )
        finally:
            controller.stop()
    assert final["phase"] == decision, final["transitions"]
    keys = Counter(
        (c["Traffic-Weight"], c["Decision"]) for c in git_trailers(remote) if c["Rollout-Id"] == rid
    )
    assert set(keys) == commits and all(n == 1 for n in keys.values()), keys
    assert "editor" not in controller.log_tail()
    assert not (world["tmp"] / "gitops-work" / ".git" / "index.lock").exists()
