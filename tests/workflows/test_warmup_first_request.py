"""Live `warmup_from: first_request`: the analyze step's warm-up starts at the first look at which the
canary had served a request, read from a real Prometheus scraping the inference server's own series;
a restarted step (a new process, a new metrics source) finds the same moment, so its warm-up does
not start again."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from prometheus_api_client import PrometheusConnect

from canaryflow.adapters.metrics.prometheus import SETTLE_S
from canaryflow.kernel.contracts.steps import Output
from canaryflow.kernel.types import RolloutSpec
from policies.model import Policy, SampleRatioPolicy, TrafficStep
from tests.workflows.metrics_exporter import Exporter
from tests.workflows.rollout_support import prometheus_step_context
from workflows.steps import StepInput
from workflows.steps.analysis import analyze

WARMUP_S = 1.0
POLICY = Policy(
    name="warm",
    steps=[TrafficStep(weight=10, min_duration_s=0, min_samples=20, warmup_s=WARMUP_S)],
    warmup_from="first_request",
    sample_ratio=SampleRatioPolicy(enabled=False),
    min_baseline_samples=20,
    evaluate_every_s=0.25,
    max_duration_s=120,
)
SPEC = RolloutSpec(rollout_id="w-1", model="warm", baseline_version="1", canary_version="2", policy="warm")


def _wait_for(prom: PrometheusConnect, promql: str, expected: float) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        result = prom.custom_query(promql)
        if result and float(result[0]["value"][1]) >= expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"prometheus never showed {promql} >= {expected}")


@pytest.mark.prometheus
def test_the_warm_up_starts_at_the_canarys_first_request_and_survives_a_restart(
    tmp_path: Path, prometheus_server
) -> None:
    exporter = Exporter("warm")
    rng = random.Random(5)
    try:
        server = prometheus_server([exporter.url.removeprefix("http://").removesuffix("/metrics")], 0.25)
        prom = PrometheusConnect(url=server.url, disable_ssl=True)
        started = time.time()
        step = StepInput(spec=SPEC, params={"step_index": 0}, started_at=started, policy=POLICY)
        exporter.serve("1", 50, 10.0, rng)  # the baseline serves; the canary is ready but gets nothing
        _wait_for(prom, 'sum(canaryflow_requests_total{model="warm",version="1"})', 50)
        waiting = analyze(prometheus_step_context(tmp_path, server.url, POLICY), step)
        assert waiting.state == "running" and Output.WINDOW_START not in waiting.outputs
        assert "first request" in waiting.message and "no request" in waiting.message

        time.sleep(WARMUP_S + 0.5)  # longer than the warm-up: counted from the step start it would be over
        first_served = time.time()
        exporter.serve("2", 5, 10.0, rng)
        _wait_for(prom, 'sum(canaryflow_requests_total{model="warm",version="2"})', 5)
        time.sleep(2.5 * POLICY.evaluate_every_s + SETTLE_S)  # a look after the scrape, settled
        warming = analyze(prometheus_step_context(tmp_path, server.url, POLICY), step)
        window_start = float(warming.outputs[Output.WINDOW_START])
        assert first_served + WARMUP_S <= window_start < first_served + WARMUP_S + 2.0, warming
        assert window_start > started + WARMUP_S + 1.0

        # A restarted step: a new process, a new metrics source, the same node start time.
        restarted = analyze(prometheus_step_context(tmp_path, server.url, POLICY), step)
        assert float(restarted.outputs[Output.WINDOW_START]) == window_start
    finally:
        exporter.close()
