"""The forecast before a rollout starts reaches its first notice (through apprise to a local receiver),
and a policy that opts in (`thin_evidence`) runs the rollout under the recommended policy when the
champion's traffic is too thin for it: recorded on the rollout, its workflow and its verdicts.

The champion's traffic comes from a recorded `Observations` (what Prometheus answered for the last
600 s at 2 or 20 requests/s); reading it from Prometheus is tested in tests/analysis."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from canaryflow.adapters.notify import BackgroundNotifier
from canaryflow.adapters.notify.apprise_channel import AppriseChannel
from canaryflow.kernel.analysis.forecast import forecast, reference_cdf
from canaryflow.kernel.analysis.observations import (
    DEFAULT_LATENCY_BUCKETS_S,
    ArmObservations,
    Histogram,
    Observations,
)
from canaryflow.kernel.contracts.notifications import NoticeEvent
from canaryflow.kernel.ports import MetricsError
from controller.controller_settings import ControllerSettings
from controller.observability import ControllerMetrics
from controller.policy_choice import PolicyChooser
from controller.reconcile import Reconciler
from controller.rollout.store import RolloutStore
from policies import Policy, ThinEvidencePolicy, load_policy
from tests.notify.receiver import Receiver
from workflows.local.runner import LocalRunner
from workflows.steps import StepOutcome

from .harness import Clock, Steps, add_rollout
from .test_notices import Recorder

THIN = load_policy("default").model_copy(
    update={"name": "thin", "thin_evidence": ThinEvidencePolicy(switch_to="low-traffic")}
)


def _loader(name: str) -> Policy:
    return THIN if name == "thin" else load_policy(name)


class Champion:
    """What the metrics source answered for the champion's last `since` seconds: `rate` requests/s,
    0.5% of them 5xx, log-normal latencies around 20 ms (the canary served nothing yet)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.asked: list[float] = []

    def observe(self, model, baseline_version, canary_version, since, *, policy=None) -> Observations:
        self.asked.append(since)
        n = int(self.rate * 600)
        cdf = reference_cdf(DEFAULT_LATENCY_BUCKETS_S)
        latency = Histogram(bounds=list(DEFAULT_LATENCY_BUCKETS_S), counts=[int(c * n) for c in cdf], total=n)
        return Observations(
            elapsed_s=600.0,
            baseline=ArmObservations(requests=n, errors=n // 200, latency_s=latency),
            canary=ArmObservations(),
        )


def _run(tmp_path, rate: float, policy: str, notifier) -> tuple[RolloutStore, Steps, str, Champion]:
    clock, steps, champion = Clock(), Steps(), Champion(rate)
    store = RolloutStore(tmp_path / "controller.db")
    runner = LocalRunner(tmp_path / "controller.db", steps, _loader, clock=clock)
    settings = ControllerSettings(db_path=tmp_path / "controller.db", mlflow_webhook_secret=SecretStr("s"))
    reconciler = Reconciler(
        settings, store, runner, None, ControllerMetrics(store), policy_loader=_loader, clock=clock,
        notifier=notifier,
    )  # fmt: skip
    reconciler.policy_choice = PolicyChooser(champion, _loader, clock)
    rid = add_rollout(store)
    store.update(rid, policy=policy)
    for _ in range(8):
        reconciler.tick()
    return store, steps, rid, champion


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


def test_the_first_notice_carries_the_forecast_of_each_check_and_the_advice(tmp_path, receiver) -> None:
    channel = AppriseChannel(f"json://{receiver.url.removeprefix('http://')}/hook")
    notifier = BackgroundNotifier([channel], backoff_s=0.05)
    store, steps, rid, champion = _run(tmp_path, 2.0, "default", notifier)
    notifier.close(5)
    started = json.loads(receiver.wait_for(1)[0].body)
    assert "v2 started against v1" in started["title"]
    body = started["message"]
    assert "forecast at 2 requests/s (the champion's last 600 s):" in body
    assert "step 1 (10%) at 0.2 canary requests/s: latency p50 in about" in body
    assert "error-rate in about" in body and "not expected to decide within max_duration_s (1,800 s)" in body
    assert "consider `policies/low-traffic.yaml` or a larger weight" in body
    # `default` does not opt in: the rollout keeps its policy (the advice is all it gets)
    record = store.get(rid)
    assert record is not None and record.policy == "default" and "set-weight-10" in steps.calls
    assert champion.asked and record.phase == "promoted"


def test_an_opted_in_policy_runs_the_rollout_under_the_recommended_one(tmp_path) -> None:
    recorder = Recorder()
    store, steps, rid, _ = _run(tmp_path, 2.0, "thin", recorder)
    record = store.detail(rid)
    assert record is not None and record.policy == "low-traffic" and record.phase == "promoted"
    started = next(t for t in record.transitions if t.event == "started")
    assert "thin evidence: the rollout runs under low-traffic" in started.reason
    assert "step 1 (50%) at 1 canary requests/s" in started.reason  # the new policy's forecast
    # the workflow is low-traffic's: one step at 50%, its input carries the policy
    assert "set-weight-50" in steps.calls and "set-weight-10" not in steps.calls
    assert steps.inputs["analyze-50"].spec.policy == "low-traffic"
    notice = recorder.notices[0]
    assert notice.event == NoticeEvent.STARTED and "runs under low-traffic" in notice.summary()


def test_an_opted_in_policy_that_can_decide_in_time_stays(tmp_path) -> None:
    store, steps, rid, _ = _run(tmp_path, 20.0, "thin", Recorder())
    record = store.detail(rid)
    assert record is not None and record.policy == "thin" and "set-weight-10" in steps.calls
    started = next(t for t in record.transitions if t.event == "started")
    assert "expected to decide in about" in started.reason and "thin evidence" not in started.reason


def test_a_forecast_that_cannot_be_made_never_holds_the_start(tmp_path) -> None:
    class Down(Champion):
        def observe(self, model, baseline_version, canary_version, since, *, policy=None) -> Observations:
            raise MetricsError("Prometheus: connection refused")

    class Broken(Champion):
        def observe(self, model, baseline_version, canary_version, since, *, policy=None) -> Observations:
            raise RuntimeError("a reading no one expected")

    for source, said in ((Down(2.0), "the champion's traffic is unreadable"), (Broken(2.0), "a reading")):
        choice = PolicyChooser(source, _loader, Clock()).choose(_record(tmp_path))
        assert choice.policy == "thin" and said in choice.reason


def _record(tmp_path):
    store = RolloutStore(tmp_path / "choice.db")
    rid = add_rollout(store)
    store.update(rid, policy="thin")
    return store.get(rid)


def test_a_step_that_ends_undecided_says_why_in_its_notice(tmp_path) -> None:
    thin = forecast(load_policy("default"), 2.0, steps=[0], refine=False).to_dict()
    undecided = {"decision": "inconclusive", "checks": [], "forecast": thin}

    class Thin(Steps):
        def __call__(self, node, step_input):
            if node.id == "analyze-10":
                outputs = {"verdict": "inconclusive", "verdict_json": json.dumps(undecided)}
                return StepOutcome(state="failed", outputs=outputs, message="inconclusive at 10%")
            return super().__call__(node, step_input)

    recorder, clock = Recorder(), Clock()
    store = RolloutStore(tmp_path / "controller.db")
    runner = LocalRunner(tmp_path / "controller.db", Thin(), _loader, clock=clock)
    settings = ControllerSettings(db_path=tmp_path / "controller.db", mlflow_webhook_secret=SecretStr("s"))
    reconciler = Reconciler(
        settings, store, runner, None, ControllerMetrics(store), policy_loader=_loader, clock=clock,
        notifier=recorder,
    )  # fmt: skip
    add_rollout(store)
    for _ in range(6):
        reconciler.tick()
    rolled_back = recorder.notices[-1]
    assert rolled_back.event == NoticeEvent.ROLLED_BACK and rolled_back.advice == thin["advice"]
    assert (
        "Forecast: step 1 (10%): at 0.2 canary requests/s the error-rate check needs" in rolled_back.summary()
    )
