"""Each built-in metric provider, read through a real Prometheus from its producer's exposition fixture:
the analysis decides on it (a slower canary rolled back, an equal one promoted), and bad input is
refused naming the policy field (a histogram query without `le`, a metric without data for one arm).

Ten minutes of a step at 50% (20 requests/s per arm) are written per provider and scenario into
Prometheus' storage (`promtool tsdb create-blocks-from openmetrics`, as tests/workflows/
test_live_pairing.py does), with the fixture's own names, labels and buckets (exposition.py), so the
test needs no ten minutes of real time and no producer running here.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from canaryflow.adapters.metrics.prometheus import PrometheusSource
from canaryflow.app.local.prometheus import PrometheusServer, start_prometheus
from canaryflow.kernel.contracts.providers import METRIC_PROVIDERS
from canaryflow.kernel.contracts.steps import Output
from canaryflow.kernel.types import RolloutSpec, Verdict
from policies import load_policy, parse_policy
from policies.model import Policy
from tests.metrics_providers.exposition import Arm, history
from tests.workflows.rollout_support import prometheus_step_context
from workflows.steps import StepInput, StepOutcome
from workflows.steps.analysis import analyze as analyze_step

EVERY_S = 5.0
DURATION_S = 600.0
RATE_PER_ARM = 20.0
SLOWDOWN = 1.5
PROVIDERS = sorted(METRIC_PROVIDERS)
# A vLLM canary whose server exports no token-timing histograms: no data for one arm.
NO_TOKEN_TIMES = frozenset({"vllm:e2e_request_latency_seconds"})


@dataclass(frozen=True)
class Step:
    server: PrometheusServer
    start: float


def _one_step(provider: str) -> dict[str, object]:
    """One traffic step at 50%, no warm-up: the provider's request latency (p50, p90) and error rate."""
    return {
        "name": f"{provider}-step",
        "metrics_provider": provider,
        "steps": [{"weight": 50, "min_duration_s": 30, "min_samples": 100, "warmup_s": 0}],
        "min_baseline_samples": 100,
        "max_duration_s": 1800,
        "metrics": [
            {
                "name": "latency",
                "kind": "latency",
                "quantiles": [0.5, 0.9],
                "tolerance": 0.1,
                "alternative": 0.25,
            },
            {"name": "error_rate", "kind": "error_rate", "tolerance": 0.005, "alternative": 0.02},
        ],
    }


@pytest.fixture(scope="module")
def step(tmp_path_factory: pytest.TempPathFactory, prometheus_binary_path: str) -> Iterator[Step]:
    promtool = Path(prometheus_binary_path).with_name("promtool")
    if not promtool.exists():
        pytest.skip("promtool (Debian package prometheus) is not installed")
    workdir = tmp_path_factory.mktemp("providers")
    # The step's history ends just before now, on the look grid: the step reads it as if it had run.
    start = math.floor(time.time() / EVERY_S) * EVERY_S - DURATION_S - EVERY_S
    times = start + EVERY_S * np.arange(int(DURATION_S / EVERY_S) + 1)
    lines: list[str] = []
    for seed, provider in enumerate(PROVIDERS):
        for scenario, canary in (("same", Arm("2", 1.0)), ("slower", Arm("2", SLOWDOWN))):
            arms = (Arm("1", 1.0), canary)
            lines += history(provider, f"{provider}-{scenario}", arms, times, RATE_PER_ARM, seed)
    lines += history(
        "vllm", "vllm-notokens", (Arm("1", 1.0), Arm("2", 1.0, NO_TOKEN_TIMES)), times, RATE_PER_ARM, 99
    )
    source = workdir / "history.om"
    source.write_text("\n".join([*_grouped(lines), "# EOF", ""]))
    data = workdir / "prometheus" / "data"
    subprocess.run(
        [str(promtool), "tsdb", "create-blocks-from", "openmetrics", "-q", str(source), str(data)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = start_prometheus(workdir / "prometheus", ["127.0.0.1:9"], interval_s=60.0)
    try:
        yield Step(server, start)
    finally:
        server.stop()


def _grouped(lines: list[str]) -> list[str]:
    """OpenMetrics wants each family's samples together: the `# TYPE` line, then all its samples."""
    families: dict[str, list[str]] = {}
    current = ""
    for line in lines:
        if line.startswith("# TYPE "):
            current = line.split()[2]
            families.setdefault(current, [line])
        else:
            families[_family_of(line, families)].append(line)
    return [line for group in families.values() for line in group]


def _family_of(line: str, families: dict[str, list[str]]) -> str:
    name = line.split("{", 1)[0]
    for suffix in ("_bucket", "_count", "_sum", ""):
        if suffix and name.endswith(suffix) and name.removesuffix(suffix) in families:
            return name.removesuffix(suffix)
    return name


def _run(step: Step, tmp_path: Path, model: str, policy: Policy) -> StepOutcome:
    spec = RolloutSpec(
        rollout_id=f"r-{model}", model=model, baseline_version="1", canary_version="2", policy="p"
    )
    given = StepInput(spec=spec, params={"step_index": 0}, started_at=step.start, policy=policy)
    return analyze_step(prometheus_step_context(tmp_path, step.server.url, policy), given)


@pytest.mark.prometheus
@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_provider_promotes_an_equal_canary_and_rolls_back_a_slower_one(
    step: Step, tmp_path: Path, provider: str
) -> None:
    policy = parse_policy(_one_step(provider))
    same = _run(step, tmp_path, f"{provider}-same", policy)
    assert same.state == "succeeded" and same.outputs[Output.VERDICT] == "pass", same.message
    slower = _run(step, tmp_path, f"{provider}-slower", policy)
    assert slower.state == "failed" and slower.outputs[Output.VERDICT] == "fail", slower.message
    verdict = Verdict.model_validate_json(slower.outputs[Output.VERDICT_JSON])
    failed = {c.metric for c in verdict.checks if c.verdict == "fail"}
    assert failed & {"latency_p50", "latency_p90"}, verdict
    errors = next(c for c in verdict.checks if c.metric == "error_rate")
    assert errors.verdict != "fail"
    # The verdict says which buckets bound each arm's quantile.
    p50 = next(c for c in verdict.checks if c.metric == "latency_p50")
    extra = p50.model_extra or {}
    assert extra["canary_bucket_low"] <= extra["canary"] <= extra["canary_bucket_high"]


@pytest.mark.prometheus
def test_coarse_buckets_are_named_in_the_reason(step: Step, tmp_path: Path) -> None:
    """Triton's four default buckets (100, 500, 2000, 5000 ms) resolve far less than +10%: said so."""
    outcome = _run(step, tmp_path, "triton-slower", parse_policy(_one_step("triton")))
    verdict = Verdict.model_validate_json(outcome.outputs[Output.VERDICT_JSON])
    p50 = next(c for c in verdict.checks if c.metric == "latency_p50")
    assert "buckets: canary 500 ms–2000 ms" in (p50.reason or ""), p50.reason


def _llm_policy() -> Policy:
    """policies/llm.yaml as one step at 50% without warm-up (the history is one step)."""
    shipped = load_policy("llm")
    return shipped.model_copy(
        update={
            "steps": [shipped.steps[-1].model_copy(update={"warmup_s": 0.0, "min_samples": 100})],
            "min_baseline_samples": 100,
            "bake_s": 0.0,
            "watch_s": 0.0,
        }
    )


@pytest.mark.prometheus
def test_llm_policy_judges_token_timings_from_vllm(step: Step, tmp_path: Path) -> None:
    policy = _llm_policy()
    same = _run(step, tmp_path, "vllm-same", policy)
    assert same.state == "succeeded", same.message
    slower = _run(step, tmp_path, "vllm-slower", policy)
    assert slower.state == "failed" and slower.outputs[Output.VERDICT] == "fail", slower.message
    verdict = Verdict.model_validate_json(slower.outputs[Output.VERDICT_JSON])
    failed = {c.metric for c in verdict.checks if c.verdict == "fail"}
    assert {"ttft_p50", "tpot_p50", "decode_speed_p50"} <= failed, verdict
    speed = next(c for c in verdict.checks if c.metric == "decode_speed_p50")
    extra = speed.model_extra or {}
    assert extra["canary"] < extra["baseline"]  # a slower canary decodes fewer tokens per second
    finish = next(c for c in verdict.checks if c.metric == "truncated")
    assert finish.verdict != "fail"


@pytest.mark.prometheus
def test_a_metric_without_data_for_one_arm_waits(step: Step, tmp_path: Path) -> None:
    outcome = _run(step, tmp_path, "vllm-notokens", _llm_policy())
    assert outcome.state == "running", outcome.message
    assert "ttft p50: no data from the canary" in outcome.message, outcome.message
    assert "e2e p95: no data" not in outcome.message


@pytest.mark.prometheus
def test_a_query_template_reads_like_the_provider(step: Step, tmp_path: Path) -> None:
    """The escape hatch: vLLM's end-to-end histogram written as the policy's own PromQL."""
    document = _one_step("vllm")
    sel = 'canaryflow_model="{{model}}",canaryflow_version="{{version}}"'
    document["metrics"] = [
        {
            "name": "latency",
            "kind": "latency",
            "quantiles": [0.5, 0.9],
            "tolerance": 0.1,
            "alternative": 0.25,
            "query": {"histogram": f"sum by (le) (vllm:e2e_request_latency_seconds_bucket{{{sel}}})"},
        }
    ]
    policy = parse_policy(document)
    assert _run(step, tmp_path, "vllm-same", policy).state == "succeeded"
    assert _run(step, tmp_path, "vllm-slower", policy).outputs[Output.VERDICT] == "fail"
    # The warm-up's first request is counted with the policy's provider too.
    source = PrometheusSource(step.server.url)
    first = source.first_request_at("vllm-same", "2", step.start, EVERY_S, policy=policy)
    assert first is not None and step.start < first <= step.start + 4 * EVERY_S


@pytest.mark.prometheus
def test_a_histogram_query_without_le_ends_the_step_naming_the_field(step: Step, tmp_path: Path) -> None:
    document = _one_step("vllm")
    document["metrics"][0]["query"] = {  # type: ignore[index]
        "histogram": 'sum(vllm:e2e_request_latency_seconds_bucket{canaryflow_version="{{version}}"})'
    }
    outcome = _run(step, tmp_path, "vllm-same", parse_policy(document))
    assert outcome.state == "failed" and outcome.outputs[Output.VERDICT] == "inconclusive"
    assert "metrics[0].query.histogram" in outcome.message and "`le`" in outcome.message
