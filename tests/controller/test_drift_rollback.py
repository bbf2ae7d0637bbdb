"""The drift monitor's opt-in response: `on_drift: rollback` rolls a drifting champion back to the
champion before it through the rollback step; the default only reports.

Real git remote, real MLflow registry, the promote and rollback steps as the local runner runs them;
the monitor is driven with prediction-log records (a reference, then a topic shift) on a fake clock.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from canaryflow.adapters.predictions import JsonlDirectoryReader
from canaryflow.app.wiring import assemble_controller
from canaryflow.kernel.contracts.drift import DriftEvent, drift_notice
from canaryflow.kernel.contracts.notifications import NoticeEvent, RolloutNotice
from canaryflow.kernel.types import RolloutSpec
from controller.api.api_context import ControllerContext
from controller.api.controller_app import create_app
from controller.drift_action import COMMIT_PURPOSE, DriftActions, DriftResponder
from controller.drift_monitor import ChampionSource, DriftMonitor
from controller.observability import ControllerMetrics
from controller.rollout.records import RolloutRecord
from controller.rollout.store import RolloutStore
from policies.drift_policy import DriftPolicy, DriftPolicyError, parse_drift_policy
from tests.drift.synthetic import Traffic
from tests.workflows.rollout_support import register_versions, rollout_policy, step_context
from workflows.local.runner import LocalRunner
from workflows.steps import StepContext, StepInput, step_runner
from workflows.steps.release import TAG_PROMOTED, TAG_REJECTED, TAG_RETIRED, StepRollback, promote

T0 = 1_700_000_000.0
REPORT = DriftPolicy.model_validate({"name": "test", "window_s": 60, "reference_window_s": 120})
ROLLBACK = REPORT.model_copy(update={"on_drift": "rollback"})


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Notices:
    """The notifier port, keeping what it was handed."""

    def __init__(self) -> None:
        self.sent: list[RolloutNotice] = []

    def notify(self, notice: RolloutNotice) -> None:
        self.sent.append(notice)

    def close(self, timeout_s: float = 5.0) -> None:
        pass


def _git(remote: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(remote), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _tree(remote: Path, model: str) -> str:
    return "\n".join(line for line in _git(remote, "ls-tree", "-r", "main").splitlines() if model in line)


class World:
    """A model whose v1 was champion (promoted by rollout r-0) and v2 promoted over it by r-1."""

    def __init__(
        self, tmp_path: Path, remote: Path, tracking_uri: str, store: RolloutStore, *, promoted=True
    ):
        self.model = f"drb-{time.time_ns() % 10**10}"
        self.remote, self.store, self.clock = remote, store, Clock()
        self.v1, self.v2 = register_versions(tracking_uri, self.model, 2)
        self.ctx: StepContext = step_context(
            remote, tmp_path / "clone", tracking_uri, "http://127.0.0.1:9/metrics", rollout_policy()
        )
        self.registry = self.ctx.registry
        earlier = RolloutSpec(
            rollout_id="r-0", model=self.model, baseline_version=self.v1, canary_version=self.v1
        )
        self.ctx.gitops.commit_step(earlier, 100, "promote")
        self.registry.set_version_tag(self.model, self.v1, TAG_PROMOTED, "r-0")
        self.tree_v1 = _tree(remote, self.model)
        if promoted:
            spec = RolloutSpec(rollout_id="r-1", model=self.model, baseline_version=self.v1,
                               canary_version=self.v2, policy="fast")  # fmt: skip
            promote(self.ctx, StepInput(spec=spec))
            record = RolloutRecord(id="r-1", model=self.model, baseline_version=self.v1,
                                   canary_version=self.v2, policy="fast", phase="promoted",
                                   created_at=T0 - 60, updated_at=T0, finished_at=T0)  # fmt: skip
            store.create_rollout(record)
        else:  # v2 made champion by hand in the registry: canaryflow knows no champion before it
            self.registry.set_alias(self.model, "champion", self.v2)
        self.head = _git(remote, "rev-parse", "main")
        self.notices = Notices()
        self.events: list[DriftEvent] = []
        self.log = tmp_path / "log"

    def monitor(self, policy: DriftPolicy, models: list[str] | None = None) -> DriftMonitor:
        actions = DriftActions(self.store.path)
        responder = DriftResponder(
            actions, self.store, StepRollback(self.ctx), notifier=self.notices, clock=self.clock
        )
        registry = self.registry if models else None
        champions = ChampionSource(self.store, registry, models or [], "champion", self.clock,
                                   rolled_back=actions.rolled_back)  # fmt: skip
        monitor = DriftMonitor(policy, JsonlDirectoryReader(self.log), champions, clock=self.clock,
                               responder=responder)  # fmt: skip
        monitor.listeners.append(self.events.append)
        return monitor

    def drift(self, monitor: DriftMonitor, seed: int = 31) -> None:
        """A reference of v2's traffic, then a window in which a new topic takes 60%."""
        traffic, file = Traffic(seed=seed), self.log / self.model / f"predictions-{T0:.3f}-1.jsonl"
        traffic.write(file, 400, t0=T0, t1=T0 + 120, model=self.model, version=self.v2)
        self.clock.now = T0 + 121
        monitor.tick()
        traffic.write(file, 150, t0=T0 + 121, t1=T0 + 181, model=self.model, version=self.v2, new_topic=0.6)
        self.clock.now = T0 + 182
        monitor.tick()

    def champion(self) -> str | None:
        return self.registry.version_for_alias(self.model, "champion")


def test_opted_in_drift_rolls_back_to_the_previous_champion_once(
    tmp_path, git_remote, mlflow_server, store, settings
):
    world = World(tmp_path, git_remote, mlflow_server.tracking_uri, store)
    monitor = world.monitor(ROLLBACK)
    world.drift(monitor)
    model, v1, v2 = world.model, world.v1, world.v2

    [detected] = world.events
    assert detected.type == "drift.detected" and detected.action.startswith(f"rolled back to v{v1} (commit ")
    # Git: one commit on top of the promotion, restoring v1's manifests exactly, with the rollout's trailers.
    head = _git(git_remote, "rev-parse", "main")
    assert _git(git_remote, "rev-parse", "main~1") == world.head
    assert _tree(git_remote, model) == world.tree_v1
    message = _git(git_remote, "log", "-1", "--format=%B", "main")
    assert f"roll back v{v2}, restore v{v1}" in message and "Reason: drift: v" in message
    assert "Rollout-Id: r-1" in message
    # Registry: as after a failed watch — v1 champion and promoted again, v2 rejected for drift.
    assert world.champion() == v1
    v1_tags, v2_tags = world.registry.version_tags(model, v1), world.registry.version_tags(model, v2)
    assert v2_tags[TAG_REJECTED].startswith("drift:") and TAG_PROMOTED not in v2_tags, v2_tags
    assert v1_tags.get(TAG_PROMOTED) == "r-0" and TAG_RETIRED not in v1_tags, v1_tags
    # Audit: the commit on the promoting rollout's record, one rolled_back notice, the API's action.
    assert [(c.sha, c.purpose) for c in store.commits_of("r-1")] == [(head, COMMIT_PURPOSE)]
    [notice] = world.notices.sent
    assert notice.event is NoticeEvent.ROLLED_BACK and notice.rollout_id == "r-1"
    assert notice.reason.startswith("drift:") and notice.headline().endswith(
        f"v{v2} rolled back, v{v1} serves"
    )
    context = ControllerContext(
        settings=settings, store=store, metrics=ControllerMetrics(store), drift=monitor
    )
    with TestClient(create_app(context)) as client:
        body = client.get(f"/models/{model}/drift").json()
    action = body["action"]
    assert action["state"] == "rolled_back" and action["commit_sha"] == head and action["rollout_id"] == "r-1"
    assert body["policy"]["on_drift"] == "rollback" and action["restored_version"] == v1
    assert f"rolled back to v{v1}" in drift_notice(detected).reason  # the drift_detected notice says so

    # Still drifting traffic of v2 (e.g. a server not yet restarted): v1 is now the champion watched,
    # with a reference of its own; nothing is rolled back again.
    Traffic(seed=32).write(world.log / model / f"predictions-{T0:.3f}-1.jsonl", 150, t0=T0 + 182,
                           t1=T0 + 242, model=model, version=v2, new_topic=0.6)  # fmt: skip
    world.clock.now = T0 + 243
    monitor.tick()
    status = monitor.status(model)
    assert status["version"] == v1 and status["reference"]["state"] == "collecting"
    assert status["champion_since"] == pytest.approx(T0 + 182)

    # A restarted controller (new monitor, responder and action log on the same database) watches v1
    # and, even when told of v2's drift again, does not roll back a second time.
    again = world.monitor(ROLLBACK)
    again.tick()
    assert again.status(model)["version"] == v1
    assert again.responder is not None
    line = again.responder.respond(model, v2, detected.verdict)
    assert line == "not rolled back again: rollout r-1 was handled before"
    assert _git(git_remote, "rev-parse", "main") == head and len(world.notices.sent) == 1


def test_default_policy_only_reports(tmp_path, git_remote, mlflow_server, store):
    assert parse_drift_policy({}).on_drift == "report"
    world = World(tmp_path, git_remote, mlflow_server.tracking_uri, store)
    monitor = world.monitor(REPORT)
    world.drift(monitor)
    [detected] = world.events
    assert detected.type == "drift.detected" and detected.action == ""
    assert monitor.status(world.model)["drift"] is True and monitor.status(world.model)["action"] is None
    assert _git(git_remote, "rev-parse", "main") == world.head and world.champion() == world.v2
    assert TAG_REJECTED not in world.registry.version_tags(world.model, world.v2)
    assert world.notices.sent == [] and store.commits_of("r-1") == []


def test_no_previous_champion_is_reported_and_nothing_changes(tmp_path, git_remote, mlflow_server, store):
    world = World(tmp_path, git_remote, mlflow_server.tracking_uri, store, promoted=False)
    monitor = world.monitor(ROLLBACK, models=[world.model])
    monitor.tick()  # the registry's champion, first seen at T0
    world.drift(monitor)
    [detected] = world.events
    why = f"no previous champion known (v{world.v2} was not promoted by a canaryflow rollout)"
    assert detected.action == f"not rolled back: {why}"
    action = monitor.status(world.model)["action"]
    assert action["state"] == "not_acted" and action["reason"].startswith("no previous champion")
    assert _git(git_remote, "rev-parse", "main") == world.head and world.champion() == world.v2
    assert world.notices.sent == []


def test_a_rollout_in_progress_is_left_alone(tmp_path, git_remote, mlflow_server, store, settings):
    world = World(tmp_path, git_remote, mlflow_server.tracking_uri, store)
    store.create_rollout(RolloutRecord(id="r-2", model=world.model, baseline_version=world.v2,
                                       canary_version=world.v1, phase="canary", created_at=T0 + 100,
                                       updated_at=T0 + 100))  # fmt: skip
    monitor = world.monitor(ROLLBACK)
    # In the controller the decision is taken under the reconcile loop's lock of the model.
    engine = LocalRunner(settings.db_path, step_runner(world.ctx), lambda _name: rollout_policy())
    service = assemble_controller(settings, store, engine, None, drift=monitor)
    assert monitor.responder is not None and monitor.responder.lock_for == service.reconciler.model_lock
    service.close(5.0)
    world.drift(monitor)
    [detected] = world.events
    assert detected.action == f"not rolled back: rollout r-2 of {world.model} is in progress"
    assert _git(git_remote, "rev-parse", "main") == world.head and world.champion() == world.v2
    assert world.notices.sent == []


def test_a_rollback_that_failed_lands_on_a_later_tick(tmp_path, git_remote, mlflow_server, store):
    world = World(tmp_path, git_remote, mlflow_server.tracking_uri, store)
    monitor = world.monitor(ROLLBACK)
    away = git_remote.with_name("away.git")
    git_remote.rename(away)  # the git remote unreachable while drift is found
    try:
        world.drift(monitor)
    finally:
        away.rename(git_remote)
    [detected] = world.events
    assert detected.action.startswith(f"rolling back to v{world.v1}: failed")
    assert monitor.status(world.model)["action"]["state"] == "acting" and world.notices.sent == []
    world.clock.now = T0 + 182 + 61  # the retry is due
    monitor.tick()
    assert monitor.status(world.model)["action"]["state"] == "rolled_back"
    assert _tree(git_remote, world.model) == world.tree_v1 and world.champion() == world.v1
    assert _git(git_remote, "rev-parse", "main~1") == world.head and len(world.notices.sent) == 1


def test_a_bad_on_drift_value_is_refused_naming_the_field():
    with pytest.raises(DriftPolicyError, match=r"^p\.yaml: on_drift: Input should be 'report' or 'rollback'"):
        parse_drift_policy({"on_drift": "revert"}, "p.yaml")


def test_a_failed_rollback_is_given_up_once_another_rollout_started(
    tmp_path, git_remote, mlflow_server, store
):
    world = World(tmp_path, git_remote, mlflow_server.tracking_uri, store)
    monitor = world.monitor(ROLLBACK)
    away = git_remote.with_name("away.git")
    git_remote.rename(away)
    try:
        world.drift(monitor)
    finally:
        away.rename(git_remote)
    record = RolloutRecord(id="r-3", model=world.model, baseline_version=world.v2, canary_version=world.v1,
                           phase="canary", created_at=T0 + 200, updated_at=T0 + 200)  # fmt: skip
    store.create_rollout(record)
    world.clock.now = T0 + 182 + 61
    monitor.tick()
    action = monitor.status(world.model)["action"]
    assert action["state"] == "not_acted" and action["reason"].startswith("abandoned: rollout r-3 started")
    assert _git(git_remote, "rev-parse", "main") == world.head and world.champion() == world.v2
    assert world.notices.sent == []


def test_opting_in_without_the_steps_settings_is_refused_at_start(tmp_path, monkeypatch):
    from canaryflow.app.wiring import build_drift_monitor
    from controller.controller_settings import ControllerSettings

    monkeypatch.delenv("CANARYFLOW_GITOPS_REMOTE_URL", raising=False)
    policy = tmp_path / "drift.yaml"
    policy.write_text("on_drift: rollback\n")
    settings = ControllerSettings(db_path=tmp_path / "c.db", drift={"enabled": True, "policy": str(policy)})
    with pytest.raises(
        ValueError, match=r"^on_drift: rollback needs the steps' gitops and registry settings"
    ):
        build_drift_monitor(settings, RolloutStore(settings.db_path), None)
