"""Live latency pairing per look, against a real Prometheus holding a traffic step's history.

Ten minutes of an A/A canary at 20 requests/s whose traffic bursts (3x slower for 10 s every 2
minutes, both versions alike) are written as the inference server's series, one sample per look,
into Prometheus' storage (`promtool tsdb create-blocks-from openmetrics`), so the test needs no ten
minutes of real time. The analyze step then reads them back through `PrometheusSource`: it pairs
latencies look by look, promotes where the replay of the same requests promotes (every number of
its verdict), and decides again the same after a restart. Read only at the window boundaries, as
the step did before, the same counts hold the decision through all ten minutes.
"""

from __future__ import annotations

import functools
import math
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from canaryflow.adapters.metrics.prometheus import PrometheusSource
from canaryflow.adapters.metrics.readings import LATENCY_METRIC, REQUESTS_METRIC
from canaryflow.app.local.prometheus import start_prometheus
from canaryflow.kernel.analysis import DEFAULT_LATENCY_BUCKETS_S, analyze
from canaryflow.kernel.analysis.replay import RequestLog, replay_log
from canaryflow.kernel.contracts.steps import Output
from canaryflow.kernel.types import RolloutSpec, Verdict
from policies import load_policy
from tests.workflows.rollout_support import prometheus_step_context
from workflows.steps import StepInput
from workflows.steps.analysis import analyze as analyze_step
from workflows.steps.analysis import bake as bake_step

DEFAULT = load_policy("default")
# The default policy's first step without its warm-up (the replay and the step then count from the
# same moment), no bake or watch: one traffic step.
POLICY = DEFAULT.model_copy(
    update={"steps": [s.model_copy(update={"warmup_s": 0.0}) for s in DEFAULT.steps], "bake_s": 0.0}
)
EVERY_S = POLICY.evaluate_every_s
DURATION_S = 600.0
SEED = 5  # one A/A history; read per window (the old live step) it never decides within 600 s
SPEC = RolloutSpec(rollout_id="p-1", model="pair", baseline_version="1", canary_version="2", policy="pair")


def _bursty_log(start: float) -> RequestLog:
    """Requests in (start, start + DURATION_S), 10% to the canary, the same version on both arms."""
    rng = np.random.default_rng(SEED)
    n = int(rng.poisson(20.0 * DURATION_S))
    t = np.sort(rng.uniform(start, start + DURATION_S, n))
    canary = rng.random(n) < 0.10
    burst = ((t - start) % 120.0) < 10.0
    latency = rng.lognormal(np.log(0.02), 0.35, n) * np.where(burst, 3.0, 1.0)
    return RequestLog(t=t, canary=canary, latency_s=latency, ok=rng.random(n) >= 0.005)


def _openmetrics(log: RequestLog, times: np.ndarray) -> str:
    """The server's latency histogram and request counter per version, one sample at each time."""
    bounds = np.asarray(DEFAULT_LATENCY_BUCKETS_S)
    latency, requests = [f"# TYPE {LATENCY_METRIC} histogram"], [f"# TYPE {REQUESTS_METRIC[:-6]} counter"]
    for version, arm in (("1", ~log.canary), ("2", log.canary)):
        sel = f'model="{SPEC.model}",version="{version}"'
        t, seconds, ok = log.t[arm], log.latency_s[arm], log.ok[arm]
        for at in times:
            seen = t <= at
            counts = np.searchsorted(np.sort(seconds[seen]), bounds, side="right")
            for bound, count in zip(DEFAULT_LATENCY_BUCKETS_S, counts, strict=True):
                latency.append(f'{LATENCY_METRIC}_bucket{{{sel},le="{bound!r}"}} {count} {at:.3f}')
            latency.append(f'{LATENCY_METRIC}_bucket{{{sel},le="+Inf"}} {seen.sum()} {at:.3f}')
            latency.append(f"{LATENCY_METRIC}_count{{{sel}}} {seen.sum()} {at:.3f}")
            latency.append(f"{LATENCY_METRIC}_sum{{{sel}}} {seconds[seen].sum():.6f} {at:.3f}")
        for code, served in (("200", ok), ("500", ~ok)):
            for at in times:
                count = int((served & (t <= at)).sum())
                requests.append(f'{REQUESTS_METRIC}{{{sel},code="{code}"}} {count} {at:.3f}')
    return "\n".join([*latency, *requests, "# EOF", ""])


def _numbers(verdict: Verdict) -> dict[str, object]:
    """A verdict without its null figures (which are null depends on the looks judged after it)."""
    data = verdict.model_dump()
    data.pop("forecast")  # the live step's forecast from the traffic seen (a replay makes none)
    data.pop("policy")  # the rollout's policy name, which a live step stamps and a replay has not
    data.pop("evidence")  # the live step's statistics at each look, for the console (a replay shows none)
    data["checks"] = [{k: v for k, v in c.items() if v is not None} for c in data["checks"]]
    return data


@pytest.mark.prometheus
def test_a_burst_shorter_than_a_window_is_paired_away_live_as_in_the_replay(
    tmp_path: Path, prometheus_binary_path: str
) -> None:
    promtool = Path(prometheus_binary_path).with_name("promtool")
    if not promtool.exists():
        pytest.skip("promtool (Debian package prometheus) is not installed")
    # The step's history ends just before now, on the look grid: the step reads it as if it had run.
    start = math.floor(time.time() / EVERY_S) * EVERY_S - DURATION_S - EVERY_S
    log = _bursty_log(start)
    history = tmp_path / "history.om"
    history.write_text(_openmetrics(log, start + EVERY_S * np.arange(int(DURATION_S / EVERY_S) + 1)))
    data = tmp_path / "prometheus" / "data"
    subprocess.run(
        [str(promtool), "tsdb", "create-blocks-from", "openmetrics", "-q", str(history), str(data)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server = start_prometheus(tmp_path / "prometheus", ["127.0.0.1:9"], interval_s=60.0)
    try:
        step = StepInput(spec=SPEC, params={"step_index": 0}, started_at=start, policy=POLICY)
        live = analyze_step(prometheus_step_context(tmp_path, server.url, POLICY), step)
        assert live.state == "succeeded" and live.outputs[Output.VERDICT] == "pass", live.message
        verdict = Verdict.model_validate_json(live.outputs[Output.VERDICT_JSON])
        replayed = replay_log(POLICY, log, start_s=start)
        assert verdict.decided_at_s is not None and verdict.decided_at_s < 300  # within the first window
        assert _numbers(verdict.model_copy(update={"decided_at_s": start + verdict.decided_at_s})) == (
            _numbers(replayed)
        )
        assert verdict.forecast is not None and verdict.forecast["steps"][0]["step"] == 0
        assert 15 < verdict.forecast["rate_rps"] < 25 and verdict.forecast["fits"] is True  # 20 req/s
        p95 = next(c for c in verdict.checks if c.metric == "latency_p95")
        assert p95.verdict == "pass" and (p95.model_extra or {}).get("paired") == 1.0

        # The bake after it carries that step's forecast (from the step's own looks) to the
        # pull-request body its verdict becomes.
        baking = POLICY.model_copy(update={"bake_s": 60.0})
        bake_input = StepInput(
            spec=SPEC,
            params={"step_index": 0},
            started_at=start + verdict.decided_at_s,
            upstream={Output.WINDOW_START: live.outputs[Output.WINDOW_START]},
            policy=baking,
        )
        baked = bake_step(prometheus_step_context(tmp_path, server.url, baking), bake_input)
        assert baked.state == "succeeded", baked.message
        assert Verdict.model_validate_json(baked.outputs[Output.VERDICT_JSON]).forecast == verdict.forecast
        assert baked.report_markdown is not None and "### Forecast" in baked.report_markdown
        assert "- step 1 (10%) at 2 canary requests/s: latency p50 in about" in baked.report_markdown

        # A restarted step (a new process, a new metrics source) reads the same looks, decides the same.
        restarted = analyze_step(prometheus_step_context(tmp_path, server.url, POLICY), step)
        assert restarted.outputs == live.outputs

        # Tick by tick, as the controller runs it: one context kept, the source's clock moving on
        # two looks per call, each call reading only its new looks from Prometheus (`from_look`) and
        # judging only them: the same verdict, at the same look, as reading them all at once.
        now = [start + EVERY_S]
        ticking = prometheus_step_context(tmp_path, server.url, POLICY)
        ticking.metrics = PrometheusSource(server.url, clock=lambda: now[0])
        calls = 0
        while (ticked := analyze_step(ticking, step)).state == "running" and now[0] < time.time():
            now[0] += 2 * EVERY_S
            calls += 1
        assert calls > 10 and ticked.outputs == live.outputs

        # The range query's looks are what an instant query at each look reads.
        source = PrometheusSource(server.url)
        looks = source.observe_looks(SPEC.model, "1", "2", start, EVERY_S)
        assert len(looks) >= DURATION_S / EVERY_S
        for k in (1, 35, len(looks) // 2, int(DURATION_S / EVERY_S)):
            at = start + k * EVERY_S
            instant = PrometheusSource(server.url, clock=functools.partial(float, at))
            assert looks[k - 1] == instant.observe(SPEC.model, "1", "2", start)

        # The same counts read as the step read them before (at each window boundary, and now):
        # pairing per window only, the bursts hold the decision at every look of the ten minutes.
        window = int(POLICY.change_window_s / EVERY_S)
        for j in range(int(DURATION_S / EVERY_S)):
            boundaries = [looks[i] for i in range(window - 1, j, window)]
            held = analyze(POLICY, looks[j], history=boundaries)
            assert held.status == "running", (looks[j].elapsed_s, held.verdict)
    finally:
        server.stop()
