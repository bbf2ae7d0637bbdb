"""Metric providers in the policy (names, templates, the signals each family has) and the kernel's
reading of a metric's own series: LLM kinds, pairing only on geometric buckets, buckets in verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from canaryflow.kernel.analysis import ArmObservations, Histogram, Observations, analyze
from canaryflow.kernel.analysis.observations import MetricArms
from canaryflow.kernel.analysis.paired import is_geometric
from canaryflow.kernel.contracts.buckets import LATENCY_BUCKETS_S
from canaryflow.kernel.contracts.providers import (
    METRIC_PROVIDERS,
    PROFILE_PROVIDERS,
    check_template,
    render,
)
from canaryflow.kernel.contracts.serving import SERVING_PROFILES
from policies import PolicyError, load_policy, parse_policy

STEP = [{"weight": 50, "min_duration_s": 0, "min_samples": 10, "warmup_s": 0}]
LATENCY = {"name": "latency", "kind": "latency", "quantiles": [0.5], "tolerance": 0.1, "alternative": 0.25}
VLLM_TPOT_S = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]


def _doc(**fields: object) -> dict[str, object]:
    return {"steps": STEP, "metrics": [LATENCY], **fields}


@pytest.mark.parametrize(
    ("doc", "field", "says"),
    [
        (_doc(metrics_provider="nginx"), "metrics_provider", "unknown metric provider 'nginx' (known: "),
        (_doc(metrics=[{**LATENCY, "provider": "nginx"}]), "metrics[0].provider", "unknown metric provider"),
        (
            _doc(metrics=[{**LATENCY, "query": {"histogram": "sum by (le) (x_bucket{app=\"{{model}}\"})"}}]),
            "metrics[0].query.histogram",
            "neither {{version}} nor {{arm}}",
        ),
        (
            _doc(metrics=[{**LATENCY, "query": {"histogram": 'x{v="{{version}}",n="{{namespace}}"}'}}]),
            "metrics[0].query.histogram",
            "unknown parameter {{namespace}}",
        ),
        (
            _doc(metrics=[{**LATENCY, "query": {"requests": "sum(x{v=\"{{version}}\"})"}}]),
            "metrics[0].query",
            "a latency metric reads a histogram: histogram is missing",
        ),
        (
            _doc(metrics=[{"name": "e", "kind": "error_rate", "tolerance": 0.01, "alternative": 0.02,
                           "query": {"requests": "sum(x{v=\"{{version}}\"})"}}]),
            "metrics[0].query",
            "errors is missing",
        ),
        (
            _doc(metrics=[{**LATENCY, "provider": "vllm", "query": {"histogram": "x{v=\"{{version}}\"}"}}]),
            "metrics[0].query",
            "a provider or a query, not both",
        ),
        (
            _doc(metrics_provider="tei", metrics=[{**LATENCY, "kind": "time_to_first_token"}]),
            "metrics_provider",
            "tei exports no time_to_first_token series",
        ),
        (
            _doc(metrics=[LATENCY, {"name": "ttft", "kind": "time_to_first_token", "quantiles": [0.5],
                                    "tolerance": 0.1, "alternative": 0.25, "provider": "istio"}]),
            "metrics[1].provider",
            "istio exports no time_to_first_token series",
        ),
        (
            _doc(metrics=[LATENCY, {"name": "cut", "kind": "finish_reason", "tolerance": 0.01,
                                    "alternative": 0.02}]),
            "metrics[1].finish_reasons",
            "needs at least one",
        ),
        (
            _doc(metrics=[{**LATENCY, "finish_reasons": ["length"]}]),
            "metrics[0].finish_reasons",
            "not used by a latency metric",
        ),
        (
            _doc(metrics=[LATENCY, {"name": "speed", "kind": "output_tokens_per_s", "quantiles": [0.5],
                                    "tolerance": 0.1, "alternative": 0.25, "provider": "vllm"}]),
            "metrics[1].direction",
            "reads higher_is_better",
        ),
    ],
)  # fmt: skip
def test_bad_providers_and_queries_name_the_field(doc: dict[str, object], field: str, says: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(doc, "p.yaml")
    message = str(err.value)
    assert message.startswith(f"p.yaml: {field}:"), message
    assert says in message, message


def test_templates_render_per_arm_escaped() -> None:
    template = 'sum by (le) (x_bucket{m="{{model}}",v="{{ version }}",arm="{{arm}}"})'
    check_template(template)
    assert render(template, {"model": 'a"b', "version": "2", "arm": "canary"}) == (
        'sum by (le) (x_bucket{m="a\\"b",v="2",arm="canary"})'
    )
    with pytest.raises(ValueError, match=r"parameter \{\{arm\}\} has no value"):
        render(template, {"model": "m", "version": "2"})


def test_every_profile_has_its_default_provider() -> None:
    assert set(PROFILE_PROVIDERS) == set(SERVING_PROFILES)
    for name in PROFILE_PROVIDERS.values():
        assert name is None or name in METRIC_PROVIDERS
    for family in METRIC_PROVIDERS.values():  # what a step's guards count
        assert {"latency", "requests"} <= set(family.signals), family.name


def test_shipped_llm_policy_reads_vllm() -> None:
    policy = load_policy("llm")
    assert policy.metrics_provider == "vllm" and policy.reads_own_series
    assert {m.kind for m in policy.metrics} >= {
        "time_to_first_token", "time_per_output_token", "output_tokens_per_s", "e2e_latency", "finish_reason"
    }  # fmt: skip
    assert not load_policy("default").reads_own_series


def test_only_geometric_buckets_are_paired() -> None:
    assert is_geometric(np.asarray(LATENCY_BUCKETS_S))
    assert not is_geometric(np.asarray(VLLM_TPOT_S))


def _tpot(rng: np.random.Generator, n: int, median_s: float) -> Histogram:
    return Histogram.from_values(rng.lognormal(np.log(median_s), 0.3, n), VLLM_TPOT_S)


def test_output_tokens_per_second_is_judged_from_time_per_output_token() -> None:
    """1 / the (1 - q)-quantile of seconds per token, higher is better: a canary decoding 1.5x slower
    is shown to lose speed, an equal one is promoted; the step's own requests are its guards."""
    policy = parse_policy(
        _doc(
            metrics_provider="vllm",
            min_baseline_samples=10,
            metrics=[
                {"name": "speed", "kind": "output_tokens_per_s", "direction": "higher_is_better",
                 "quantiles": [0.5], "tolerance": 0.1, "alternative": 0.25},
            ],
        )
    )  # fmt: skip
    rng = np.random.default_rng(3)
    step = ArmObservations(requests=6000)

    def observe(canary_median_s: float) -> Observations:
        arms = MetricArms(baseline=ArmObservations(latency_s=_tpot(rng, 6000, 0.06)),
                          canary=ArmObservations(latency_s=_tpot(rng, 6000, canary_median_s)))  # fmt: skip
        return Observations(elapsed_s=600, baseline=step, canary=step, per_metric={"speed": arms})

    slower = analyze(policy, observe(0.09))
    assert slower.status == "fail", slower.verdict
    check = slower.verdict.checks[0]
    extra = check.model_extra or {}
    assert extra["canary"] < extra["baseline"] and extra["worse_lower"] > 0.1
    assert "tok/s" in (check.reason or "")
    assert analyze(policy, observe(0.06)).status == "pass"


def test_a_kind_without_its_own_series_has_no_data() -> None:
    """A time-to-first-token metric never reads the step's request latency in its place."""
    policy = parse_policy(
        _doc(
            metrics_provider="vllm",
            min_baseline_samples=10,
            metrics=[LATENCY, {**LATENCY, "name": "ttft", "kind": "time_to_first_token"}],
        )
    )
    rng = np.random.default_rng(5)
    arm = ArmObservations(requests=3000, latency_s=_tpot(rng, 3000, 0.06))
    result = analyze(policy, Observations(elapsed_s=600, baseline=arm, canary=arm))
    ttft = next(c for c in result.verdict.checks if c.metric == "ttft_p50")
    assert ttft.verdict == "inconclusive" and ttft.reason == "ttft p50: no data"
    assert result.status == "running"
