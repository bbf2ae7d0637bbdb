"""Stopping the reconcile workers ends every job within the deadline, and nothing is written after
`close` returns True (the benchmark once removed its temporary directory under jobs still running)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import dataclass

from controller.rollout.records import RolloutRecord
from controller.rollout.store import RolloutStore
from workflows.dag import DagNode
from workflows.steps.base import StepInput, StepOutcome

from .harness import Steps, make, policy

STEP_S = 0.3  # one analysis call's time: what a stop may have to wait for


@dataclass
class SlowSteps(Steps):
    """Every analysis call takes STEP_S and answers "not yet"; the time of each call is kept."""

    def __post_init__(self) -> None:
        self.times: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, node: DagNode, step_input: StepInput) -> StepOutcome:
        if node.step == "analyze":
            with self.lock:
                self.times.append(time.time())
            time.sleep(STEP_S)
            return StepOutcome(state="running", message="waiting for samples")
        return super().__call__(node, step_input)


def _rollouts(store: RolloutStore, models: int) -> None:
    now = time.time()
    for i in range(models):
        store.create_rollout(
            RolloutRecord(
                id=f"m{i}-v2", model=f"m{i}", baseline_version="1", canary_version="2",
                created_at=now, updated_at=now, reason="test",
            )
        )  # fmt: skip


def _snapshot(store: RolloutStore) -> list[tuple[str, float, str | None]]:
    return sorted((r.id, r.updated_at, r.waiting_reason) for r in store.rollouts())


def test_close_ends_the_running_jobs_within_one_step_and_nothing_runs_after(tmp_path) -> None:
    steps = SlowSteps()
    reconciler, store, _, _ = make(tmp_path, steps, policy(5, 50), workers=2)
    _rollouts(store, 8)
    reconciler.tick()  # starts them all: each has had one analysis call
    assert len(steps.times) == 8
    ticking = threading.Thread(target=reconciler.tick)  # a round of 8 calls on 2 workers: about 1.2 s
    ticking.start()
    time.sleep(STEP_S / 3)
    started = time.monotonic()
    assert reconciler.close(timeout_s=5.0)
    took = time.monotonic() - started
    assert took < STEP_S + 0.5, f"close took {took:.2f} s: it waited for more than the jobs running"
    stopped_at = time.time()
    before = (_snapshot(store), len(steps.times))
    ticking.join(5.0)
    assert not ticking.is_alive()
    assert reconciler.tick() == 0  # a tick after the stop starts nothing
    time.sleep(STEP_S * 2)
    assert (_snapshot(store), len(steps.times)) == before
    assert all(t < stopped_at for t in steps.times)
    assert len(steps.times) < 16  # the round was cut short, not run to its end


def test_close_says_so_when_a_job_outlives_the_deadline(tmp_path) -> None:
    steps = SlowSteps()
    reconciler, store, _, _ = make(tmp_path, steps, policy(5, 50), workers=1)
    _rollouts(store, 1)
    reconciler.tick()
    ticking = threading.Thread(target=reconciler.tick)
    ticking.start()
    time.sleep(STEP_S / 3)
    assert not reconciler.close(timeout_s=0.01)  # the call in flight takes longer than that
    ticking.join(5.0)


def _reader_alive() -> bool:
    return any(t.name == "canaryflow-metrics-reader" and t.is_alive() for t in threading.enumerate())


def _read_process_alive() -> bool:
    return any(p.name == "canaryflow-metrics-read-process" for p in multiprocessing.active_children())


def test_close_ends_the_local_runners_metrics_reader(tmp_path, monkeypatch) -> None:
    """The local runner's steps read their looks through the batched reader's thread (started by the
    first step asking) and its reader process (started by the first read); the service's clean stop
    ends both, once the jobs have ended."""
    from pydantic import SecretStr

    from canaryflow.adapters.metrics.batched import BatchedSource
    from canaryflow.app.local.gitremote import init_bare_remote
    from canaryflow.app.local.process import free_port
    from canaryflow.app.wiring import assemble_controller, build_engine
    from controller.controller_settings import ControllerSettings
    from workflows.local.runner import LocalRunner
    from workflows.workflow_settings import WorkflowSettings

    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: the reader's reads fail, it goes on
    monkeypatch.setenv("CANARYFLOW_METRICS_BACKEND", "prometheus")
    monkeypatch.setenv("CANARYFLOW_METRICS_PROMETHEUS_URL", nowhere)
    monkeypatch.setenv("CANARYFLOW_CONTROLLER_REGISTRY_TRACKING_URI", nowhere)
    monkeypatch.setenv("CANARYFLOW_GITOPS_REMOTE_URL", str(init_bare_remote(tmp_path / "gitops.git")))
    monkeypatch.setenv("CANARYFLOW_GITOPS_WORKDIR", str(tmp_path / "work"))
    settings = ControllerSettings(db_path=tmp_path / "c.db", mlflow_webhook_secret=SecretStr("s"))
    store = RolloutStore(settings.db_path)
    runner = build_engine(WorkflowSettings(engine="local"), settings.db_path, settings)
    assert isinstance(runner, LocalRunner)
    metrics = runner._run_step.context.metrics  # type: ignore[attr-defined]
    assert isinstance(metrics, BatchedSource)
    service = assemble_controller(settings, store, runner, None, closing=(runner.close,))
    assert metrics.observe_looks("m", "1", "2", 1_700_000_000.0, 5.0) == []  # registers, starts the reader
    assert _reader_alive()
    deadline = time.monotonic() + 20.0  # its first read starts the reader process (metrics.read_process)
    while not _read_process_alive():
        assert time.monotonic() < deadline, "the batched reads' process did not start"
        time.sleep(0.05)
    assert service.close(timeout_s=5.0)
    assert not _reader_alive() and not _read_process_alive()
