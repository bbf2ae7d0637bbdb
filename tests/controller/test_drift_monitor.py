"""The controller's drift monitor: a champion's reference from the prediction log, windows judged on
the policy's cadence, events on a change, `GET /models/{name}/drift` and `canaryflow_drift_*`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from canaryflow.adapters.predictions import JsonlDirectoryReader
from canaryflow.adapters.registry import MlflowRegistry
from canaryflow.kernel.contracts.drift import DRIFT_TAG, DriftEvent
from controller.api.api_context import ControllerContext
from controller.api.controller_app import create_app
from controller.drift_monitor import ChampionSource, DriftCollector, DriftMonitor
from controller.observability import ControllerMetrics
from controller.rollout.records import RolloutRecord
from policies.drift_policy import DriftPolicy
from tests.drift.synthetic import Traffic

T0 = 1_700_000_000.0
POLICY = DriftPolicy.model_validate(
    {
        "name": "test",
        "window_s": 60,
        "reference_window_s": 120,
        "min_samples": 50,
    }
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _promote(store, model: str, version: str, at: float) -> None:
    store.create_rollout(
        RolloutRecord(
            id=f"{model}-v{version}",
            model=model,
            baseline_version="1",
            canary_version=version,
            phase="promoted",
            created_at=at - 60,
            updated_at=at,
            finished_at=at,
        )
    )


def _monitor(store, tmp_path: Path, clock: Clock, registry=None, models=()) -> DriftMonitor:
    champions = ChampionSource(store, registry, list(models), "champion", clock)
    return DriftMonitor(POLICY, JsonlDirectoryReader(tmp_path), champions, registry=registry, clock=clock)


def _status(monitor: DriftMonitor) -> dict[str, Any]:
    status = monitor.status("minilm")
    assert status is not None
    return status


def _drive(monitor: DriftMonitor, traffic: Traffic, log: Path, clock: Clock, version: str = "2") -> list[str]:
    """Reference, then a quiet window, a topic shift, and a return to normal; the verdict after each."""
    traffic.write(log, 400, t0=T0, t1=T0 + 120, version=version)
    traffic.write(log, 60, t0=T0, t1=T0 + 120, version="1", new_topic=1.0)  # another version: ignored
    clock.now = T0 + 60
    monitor.tick()
    assert _status(monitor)["reference"]["state"] == "collecting"
    clock.now = T0 + 121
    monitor.tick()
    assert _status(monitor)["reference"]["samples"] == 400
    seen = []
    for start, shift in ((T0 + 121, 0.0), (T0 + 182, 0.6), (T0 + 243, 0.0)):
        traffic.write(log, 150, t0=start, t1=start + 60, version=version, new_topic=shift)
        clock.now = start + 61
        monitor.tick()
        seen.append("drift" if _status(monitor)["verdict"]["drift"] else "no drift")
    return seen


def test_monitor_detects_a_topic_shift_and_reports_it(tmp_path, settings, store):
    clock = Clock()
    _promote(store, "minilm", "2", T0)
    monitor = _monitor(store, tmp_path, clock)
    events: list[DriftEvent] = []
    monitor.listeners.append(events.append)
    metrics = ControllerMetrics(store)
    metrics.registry.register(DriftCollector(monitor))
    context = ControllerContext(settings=settings, store=store, metrics=metrics, drift=monitor)
    log = tmp_path / "minilm" / f"predictions-{T0:.3f}-1.jsonl"
    with TestClient(create_app(context)) as client:
        assert _drive(monitor, Traffic(seed=21), log, clock) == ["no drift", "drift", "no drift"]
        assert [(e.type, e.version) for e in events] == [("drift.detected", "2"), ("drift.cleared", "2")]
        assert "embedding_mmd" in {c.name for c in events[0].verdict.checks if c.drift}

        clock.now = T0 + 400
        Traffic(seed=22).write(log, 150, t0=T0 + 340, t1=T0 + 399, version="2", new_topic=0.6)
        monitor.tick()
        body = client.get("/models/minilm/drift").json()
        assert body["version"] == "2" and body["drift"] is True and body["window_samples"] == 150
        assert body["policy"]["alpha_per_check"] == pytest.approx(0.5 / (30 * 86400 / 60) / 4)
        assert body["evaluations"] == {"drift": 2, "no_drift": 2, "no_data": 0}
        exposition = client.get("/metrics").text
        assert 'canaryflow_drift_detected{model="minilm",version="2"} 1.0' in exposition
        assert 'canaryflow_drift_statistic{check="embedding_mmd",model="minilm",version="2"}' in exposition
        assert (
            'canaryflow_drift_evaluations_total{model="minilm",outcome="drift",version="2"} 2.0' in exposition
        )

        missing = client.get("/models/other/drift")
        assert missing.status_code == 404 and "minilm" in missing.json()["detail"]


def test_a_new_champion_starts_a_new_reference(tmp_path, store):
    clock = Clock()
    _promote(store, "minilm", "2", T0)
    monitor = _monitor(store, tmp_path, clock)
    log = tmp_path / "minilm" / f"predictions-{T0:.3f}-1.jsonl"
    Traffic(seed=23).write(log, 300, t0=T0, t1=T0 + 120, version="2")
    clock.now = T0 + 121
    monitor.tick()
    assert _status(monitor)["reference"]["state"] == "ready"
    _promote(store, "minilm", "3", T0 + 130)
    clock.now = T0 + 131
    monitor.tick()
    status = monitor.status("minilm")
    assert status["version"] == "3" and status["reference"]["state"] == "collecting"


def test_drift_endpoint_is_404_when_monitoring_is_off(client):
    response = client.get("/models/minilm/drift")
    assert response.status_code == 404 and "drift monitoring is off" in response.json()["detail"]


def test_registry_champion_is_watched_and_tagged_on_drift(tmp_path, store, mlflow_server):
    from mlflow.tracking import MlflowClient

    name = f"drift-{time.time_ns()}"
    mlflow = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    run = mlflow.create_run(mlflow.create_experiment(name))
    mlflow.create_registered_model(name)
    for _ in range(2):
        mlflow.create_model_version(name, source=f"{run.info.artifact_uri}/m", run_id=run.info.run_id)
    mlflow.set_registered_model_alias(name, "champion", "2")
    clock = Clock()
    registry = MlflowRegistry(mlflow_server.url)
    monitor = _monitor(store, tmp_path, clock, registry=registry, models=[name])
    monitor.tick()  # first seen now: the reference starts here
    log = tmp_path / name / f"predictions-{T0:.3f}-1.jsonl"
    traffic = Traffic(seed=24)
    traffic.write(log, 400, t0=T0, t1=T0 + 120, model=name, version="2")
    clock.now = T0 + 121
    monitor.tick()
    traffic.write(log, 150, t0=T0 + 121, t1=T0 + 181, model=name, version="2", new_topic=0.6)
    clock.now = T0 + 182
    monitor.tick()
    assert monitor.status(name)["drift"] is True
    assert mlflow.get_model_version(name, "2").tags.get(DRIFT_TAG) == "true"


def test_drift_events_become_notices_for_the_channels():
    from canaryflow.kernel.contracts.drift import DriftCheck, DriftVerdict, drift_notice

    verdict = DriftVerdict(
        drift=True,
        checks=[
            DriftCheck(name="embedding_mmd", statistic=8.4, threshold=3.9, drift=True, samples=150),
            DriftCheck(name="tokens_ks", statistic=0.05, threshold=0.16, drift=False, samples=150),
        ],
    )
    notice = drift_notice(
        DriftEvent(type="drift.detected", model="minilm", version="2", at=T0, verdict=verdict)
    )
    assert notice.headline() == "minilm (champion): champion v2 drifts from its reference"
    assert notice.cloudevent_type == "io.canaryflow.drift.detected"
    assert "- embedding_mmd: fail (8.4 > 3.9)" in notice.summary()
    assert "- tokens_ks: pass (0.05 <= 0.16)" in notice.summary()
    cleared = drift_notice(DriftEvent(type="drift.cleared", model="minilm", version="2", at=T0 + 60,
                                      verdict=verdict.model_copy(update={"drift": False})))  # fmt: skip
    assert (
        cleared.cloudevent_type == "io.canaryflow.drift.cleared" and cleared.rollout_id != notice.rollout_id
    )
