"""Canary analysis benchmark: simulated request logs where the truth is known.

For each scenario x traffic rate x seed it simulates one traffic step (canary at 10%) and judges it
with canaryflow's engine (the same code as `canaryflow analyze replay`, default policy) and with two
baselines on the same log:

- fixed: a Kayenta-style fixed-horizon judge; at the horizon, a Mann-Whitney U test per metric
  (latency on the raw per-request values, errors on the 0/1 outcomes), canary "high" when
  significant at 1% (Bonferroni over the 2 metrics) and worse than the tolerance; rollback if any
  metric is high, else promote. Its horizon is the shortest in HORIZONS_S whose false-promotion rate
  meets the 5% budget at that traffic rate (so it is compared at equal or lower error rates).
- threshold: an Argo-Rollouts-style analysis; every 60 s the canary's p95 latency and error rate are
  compared with fixed thresholds (1.2 x the baseline's steady-state p95, steady-state error + 1 point),
  failureLimit 2 over 10 measurements.

Run: .venv/bin/python bench/analysis.py [--quick] [--seeds N]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from canaryflow.kernel.analysis.observations import DEFAULT_LATENCY_BUCKETS_S
from canaryflow.kernel.analysis.replay import RequestLog, replay_log
from canaryflow.kernel.analysis.rollout_replay import replay_rollout
from canaryflow.kernel.analysis.thin_evidence import choose_policy
from policies import Policy, ThinEvidencePolicy, load_policy

MEDIAN_MS = 20.0
SIGMA = 0.35
BASE_ERROR = 0.005
CANARY_SHARE = 0.10
HORIZONS_S = (15, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600, 900, 1200, 1800)


@dataclass(frozen=True)
class Scenario:
    name: str
    truth: str  # "good": rolling back is an error; "bad": promoting is an error; "srm": should not decide
    latency_shift: float = 1.0
    error_shift: float = 0.0
    load_swings: bool = False
    bursts: bool = False
    canary_share: float | None = None  # None: the policy's first step weight (10% by default)
    heavy_tail: bool = False
    cold: tuple[float, float] = (1.0, 0.0)  # canary latency x factor for its first seconds
    leak: tuple[float, float] = (1.0, 1800.0)  # canary latency reaches x factor at that time, linearly
    diurnal: bool = False
    rps: float | None = None  # a fixed traffic rate (low-traffic scenarios), else the run's rates
    steady: bool = True  # no change over time in the canary: the speed target applies
    policy: str = "default"  # the shipped policy canaryflow judges it with; "auto": the forecast's choice
    sigma: float = SIGMA  # log-normal spread of both versions' latencies
    tail_5_20: bool = False  # 5% of requests (both versions) 5-20x slower: a long tail at the p95
    regress: tuple[float, float] = (1.0, math.inf)  # canary latency x factor from that time on
    whole: bool = False  # judged by the whole-rollout replay (every step, bake, watch) on one log


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("A/A (same version)", "good"),
    Scenario("latency +10% (tolerance)", "good", latency_shift=1.10),
    Scenario("errors +0.5 pt (tolerance)", "good", error_shift=0.005),
    Scenario("latency +25%", "bad", latency_shift=1.25),
    Scenario("latency +100%", "bad", latency_shift=2.0),
    Scenario("errors +2 points", "bad", error_shift=0.02),
    Scenario("load swings, A/A", "good", load_swings=True),
    Scenario("bursts, A/A", "good", bursts=True),
    Scenario("heavy tails, A/A", "good", heavy_tail=True),
    Scenario("diurnal drift, A/A", "good", diurnal=True),
    Scenario("starved canary (3%)", "srm", canary_share=0.03),
    Scenario("cold start 2x 30 s", "good", cold=(2.0, 30.0), steady=False),
    Scenario("cold start 3x 90 s", "good", cold=(3.0, 90.0), steady=False),
    Scenario("cold start 3x 120 s", "good", cold=(3.0, 120.0), steady=False),
    Scenario("cold start 4x 180 s", "good", cold=(4.0, 180.0), steady=False),
    Scenario("leak to +25% at 30 min", "bad", leak=(1.25, 1800.0), steady=False),
    Scenario("leak to +100% at 30 min", "bad", leak=(2.0, 1800.0), steady=False),
    # Very low traffic, 2 requests/s in all: the default policy (0.2 canary req/s), then
    # policies/low-traffic.yaml (one step at 50%: 1 canary req/s). Same kinds of bad scenarios as above.
    *(
        Scenario(f"{name}, {suffix}", truth, rps=2.0, policy=policy, steady=steady, **shift)
        for policy, suffix in (("default", "0.2 canary req/s"), ("low-traffic", "1 canary req/s"))
        for name, truth, steady, shift in (
            ("A/A", "good", True, {}),
            ("latency +25%", "bad", True, {"latency_shift": 1.25}),
            ("latency +100%", "bad", True, {"latency_shift": 2.0}),
            ("errors +2 points", "bad", True, {"error_shift": 0.02}),
            ("cold start 3x 120 s", "good", False, {"cold": (3.0, 120.0)}),
            ("leak +25% at 30 min", "bad", False, {"leak": (1.25, 1800.0)}),
        )
    ),
    # Thin evidence (issue 30): heavy tails at 30 req/s, identical versions at 5 and 2 req/s, each
    # under the default policy and under the policy the forecast picks ("auto": the default when
    # it can decide in time at the rate and latencies seen before the rollout, else low-traffic).
    *(
        Scenario(f"{name}, {policy}", "good", rps=rps, policy=policy, sigma=sigma, tail_5_20=tail)
        for name, rps, sigma, tail in (
            ("heavy tail σ0.9 + 5% 5-20x, A/A, 30 req/s", 30.0, 0.9, True),
            ("A/A, 5 req/s", 5.0, SIGMA, False),
            ("A/A, 2 req/s", 2.0, SIGMA, False),
        )
        for policy in ("default", "auto")
    ),
    # A regression that begins late, judged by the whole-rollout replay: both steps, the bake, the
    # watch against the previous champion's record (issue 30).
    Scenario(
        "latency +50% from 10 min, whole rollout", "bad", regress=(1.5, 600.0), steady=False, whole=True
    ),
    Scenario("A/A, whole rollout", "good", whole=True),
)


def _load(t: np.ndarray, sc: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """Latency multiplier and error rate at each time: what load does to both versions alike."""
    mult = np.ones_like(t)
    err = np.full_like(t, BASE_ERROR)
    if sc.load_swings:
        level = 1.0 + 0.6 * np.sin(2 * np.pi * t / 600.0)  # traffic swings +-60% over 10 minutes
        mult = level**1.5
        err = BASE_ERROR * level**2
    if sc.bursts:
        burst = (t % 120.0) < 10.0  # 10 s of trouble every 2 minutes
        mult = np.where(burst, 3.0 * mult, mult)
        err = np.where(burst, 0.08, err)
    if sc.diurnal:  # the evening ramp: both versions 20% slower per hour, errors up by half
        mult = mult * (1.0 + 0.2 * t / 3600.0)
        err = err * (1.0 + 0.5 * t / 3600.0)
    return mult, err


def _canary_factor(t: np.ndarray, sc: Scenario) -> np.ndarray:
    """What the canary version itself does over time: a steady shift, a cold start, a leak."""
    factor, seconds = sc.cold
    leak_to, leak_at = sc.leak
    cold = np.where(t < seconds, factor, 1.0)
    regress = np.where(t >= sc.regress[1], sc.regress[0], 1.0)
    return sc.latency_shift * cold * regress * (1.0 + (leak_to - 1.0) * t / leak_at)


def simulate(
    sc: Scenario, rps: float, seed: int, start: float, end: float, share: float | None = None
) -> RequestLog:
    """Requests in [start, end); `share` of them to the canary (the scenario's share by default)."""
    rng = np.random.default_rng(seed)
    peak = rps * (1.6 if sc.load_swings else 1.0)
    n = rng.poisson(peak * (end - start))
    t = np.sort(rng.uniform(start, end, n))
    if sc.load_swings:  # thinning: arrivals follow the load
        t = t[rng.random(n) < (1.0 + 0.6 * np.sin(2 * np.pi * t / 600.0)) / 1.6]
    n = t.shape[0]
    share = share if share is not None else sc.canary_share
    share = share if share is not None else _policy(sc.policy).steps[0].weight / 100.0
    canary = np.asarray(rng.random(n) < share, dtype=np.bool_)
    mult, err = _load(t, sc)
    latency = rng.lognormal(np.log(MEDIAN_MS), sc.sigma, n) * mult
    if sc.tail_5_20:
        latency = np.where(rng.random(n) < 0.05, latency * rng.uniform(5.0, 20.0, n), latency)
    if sc.heavy_tail:
        tail = rng.random(n) < 0.05
        latency = np.where(tail, latency * (1.0 + rng.pareto(1.5, n)), latency)
    latency = np.where(canary, latency * _canary_factor(t, sc), latency)
    ok = rng.random(n) >= np.clip(err + np.where(canary, sc.error_shift, 0.0), 0, 1)
    return RequestLog(t=t, canary=canary, latency_s=latency / 1000.0, ok=ok)


def watch_log(step: RequestLog, sc: Scenario, rps: float, seed: int, promoted_at: float) -> RequestLog:
    """After promotion: every request goes to the new champion; the baseline arm is the previous
    champion's record (its requests up to the promotion, all seen at the watch's first look)."""
    policy = _policy(sc.policy)
    end = promoted_at + policy.watch_s + policy.evaluate_every_s  # the last look falls inside the log
    after = simulate(sc, rps, seed + 1, promoted_at, end, share=1.0)
    before = (step.t <= promoted_at) & ~step.canary
    return RequestLog(
        t=np.concatenate([np.zeros(int(before.sum())), after.t - promoted_at]),
        canary=np.concatenate([np.zeros(int(before.sum()), dtype=bool), after.canary]),
        latency_s=np.concatenate([step.latency_s[before], after.latency_s]),
        ok=np.concatenate([step.ok[before], after.ok]),
    )


def fixed_horizon(log: RequestLog, horizon: float) -> str:
    """Kayenta-style: Mann-Whitney per metric on everything up to the horizon."""
    m = log.t <= horizon
    c, b = m & log.canary, m & ~log.canary
    if c.sum() < 2 or b.sum() < 2:
        return "inconclusive"
    alpha = 0.01 / 2
    lat_c, lat_b = log.latency_s[c], log.latency_s[b]
    p_lat = mannwhitneyu(lat_c, lat_b, alternative="two-sided").pvalue
    lat_high = p_lat < alpha and np.median(lat_c) > 1.10 * np.median(lat_b)
    err_c, err_b = (~log.ok[c]).astype(float), (~log.ok[b]).astype(float)
    p_err = mannwhitneyu(err_c, err_b, alternative="two-sided").pvalue if err_c.sum() + err_b.sum() else 1.0
    err_high = p_err < alpha and err_c.mean() - err_b.mean() > 0.005
    return "rollback" if lat_high or err_high else "promote"


def threshold_analysis(log: RequestLog) -> tuple[str, float]:
    """Argo-Rollouts-style: fixed thresholds per 60 s interval, failureLimit 2, count 10."""
    p95_limit = 1.2 * MEDIAN_MS * np.exp(1.645 * SIGMA) / 1000.0
    failures = 0
    for k in range(10):
        m = (log.t > 60.0 * k) & (log.t <= 60.0 * (k + 1)) & log.canary
        if m.sum() == 0:
            failures += 1
        else:
            p95 = np.quantile(log.latency_s[m], 0.95)
            error_rate = 1.0 - log.ok[m].mean()
            failures += int(p95 > p95_limit or error_rate > BASE_ERROR + 0.01)
        if failures > 2:
            return "rollback", 60.0 * (k + 1)
    return "promote", 600.0


@functools.cache
def _policy(name: str = "default") -> Policy:
    """A shipped policy by name, or as a rollout records it ("low-traffic@prior_strength=1300")."""
    if name == SWITCHING:
        return load_policy("default").model_copy(
            update={"thin_evidence": ThinEvidencePolicy(switch_to="low-traffic")}
        )
    return load_policy(name)


# The default policy with the thin-evidence switch on (`thin_evidence: {switch_to: low-traffic}`):
# what the "auto" scenarios run, through the controller's own choice (`choose_policy`).
SWITCHING = "default+thin_evidence"


Decided = tuple[str, float]


def rollout(sc: Scenario, rps: float, seed: int, log: RequestLog) -> tuple[Decided, str]:
    """canaryflow on one rollout: the step (after its warm-up), the bake, then the watch.

    Returns the traffic decision and its time (promotion at the bake's end, or a rollback), and the
    final outcome once the watch is over ("rollback" if the watch rolled the champion back).
    """
    policy = _policy(sc.policy)
    verdict = replay_log(policy, log, start_s=0.0, bake_s=policy.bake_s)
    decided_at = verdict.decided_at_s if verdict.decided_at_s is not None else policy.max_duration_s
    if verdict.decision != "promote" or policy.watch_s <= 0:
        return (verdict.decision, decided_at), verdict.decision
    watch = replay_log(
        policy,
        watch_log(log, sc, rps, seed, decided_at),
        start_s=0.0,
        step_index=len(policy.steps) - 1,
        canary_weight=100.0,
        hold_until_s=policy.watch_s,
        recorded_baseline=True,
    )
    return ("promote", decided_at), "rollback" if watch.decision == "rollback" else "promote"


def auto_policy(sc: Scenario, rps: float, seed: int) -> str:
    """The policy the controller starts the rollout under (`controller.policy_choice`) when the
    default policy sets `thin_evidence: {switch_to: low-traffic}`: from the 10 minutes the champion
    served before the rollout (its rate, error rate and latency histogram), the default if it can
    decide in time, else the recommended one (`choose_policy`), as the rollout would record it."""
    history = simulate(sc, rps, seed + 3, -600.0, 0.0, share=0.0)
    bounds = np.asarray(DEFAULT_LATENCY_BUCKETS_S)
    n = max(history.t.shape[0], 1)
    cdf = np.searchsorted(np.sort(history.latency_s), bounds, side="right") / n
    reference = {"error_rate": float(np.mean(~history.ok)), "latency_cdf": cdf}
    choice = choose_policy(
        _policy(SWITCHING), "default", history.t.shape[0] / 600.0, _policy("low-traffic"), **reference
    )
    return choice.name


def whole_rollout_log(sc: Scenario, rps: float, seed: int) -> RequestLog:
    """What a live rollout under the scenario would have recorded: each step's traffic at its weight
    from the look the previous step passed, the bake, then every request on the new champion for the
    watch. Each phase's end comes from judging it as the rollout would (`replay_log`)."""
    policy = _policy(sc.policy)
    parts: list[RequestLog] = []
    start, last = 0.0, len(policy.steps) - 1
    for index, step in enumerate(policy.steps):
        bake = policy.bake_s if index == last else 0.0
        part = simulate(sc, rps, seed + index, start, start + policy.max_duration_s + bake, step.weight / 100)
        verdict = replay_log(policy, part, step_index=index, start_s=start, bake_s=bake)
        if verdict.decision != "promote" or verdict.decided_at_s is None:
            return _concat([*parts, part])
        parts.append(_cut(part, verdict.decided_at_s))
        start = verdict.decided_at_s
    end = start + policy.watch_s + policy.evaluate_every_s
    return _concat([*parts, simulate(sc, rps, seed + 10, start, end, share=1.0)])


def _cut(log: RequestLog, end: float) -> RequestLog:
    keep = log.t <= end
    return RequestLog(log.t[keep], log.canary[keep], log.latency_s[keep], log.ok[keep])


def _concat(parts: list[RequestLog]) -> RequestLog:
    return RequestLog(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("t", "canary", "latency_s", "ok"))
    )


def whole_rollout(sc: Scenario, rps: float, seed: int) -> tuple[Decided, str]:
    """canaryflow's whole-rollout replay (`canaryflow analyze replay --rollout`) on the recorded log."""
    policy = _policy(sc.policy)
    result = replay_rollout(policy, whole_rollout_log(sc, rps, seed), start_s=0.0)
    promoted = result.promoted_at_s
    if promoted is not None:
        return ("promote", promoted), result.decision
    return (result.decision, result.decided_at_s or policy.max_duration_s), result.decision


def judge_one(job: tuple[int, float, int]) -> tuple[Decided, str, dict[int, str], Decided]:
    """All judges on one simulated log (a worker's unit of work)."""
    index, rps, seed = job
    sc = SCENARIOS[index]
    seed = seed * 7919 + int(rps * 10)
    if sc.policy == "auto":
        sc = replace(sc, policy=auto_policy(sc, rps, seed))
    policy = _policy(sc.policy)
    log = simulate(sc, rps, seed, 0.0, policy.max_duration_s + policy.bake_s)
    decided, final = whole_rollout(sc, rps, seed) if sc.whole else rollout(sc, rps, seed, log)
    return decided, final, {h: fixed_horizon(log, h) for h in HORIZONS_S}, threshold_analysis(log)


Judged = tuple[Decided, str, dict[int, str], Decided]


def _judged(pool: Any, index: int, rps: float, seeds: int, log: Path | None) -> list[Judged]:
    """Every seed of one scenario, in order; each appended to `log` as it finishes (a run cut short
    on a busy machine keeps the seeds it judged: `--from-log` makes the table of them)."""
    results: list[Judged] = []
    for seed, result in enumerate(pool.imap(judge_one, [(index, rps, seed) for seed in range(seeds)])):
        results.append(result)
        if log is not None:
            line = {"scenario": SCENARIOS[index].name, "rps": rps, "seed": seed, "result": result}
            with log.open("a") as out:
                out.write(json.dumps(line) + "\n")
    return results


def read_log(path: Path) -> dict[tuple[str, float], list[Judged]]:
    """The runs a `--log` file holds, per (scenario, rate), in seed order (the last of a repeated seed)."""
    found: dict[tuple[str, float], dict[int, Judged]] = {}
    for text in path.read_text().splitlines():
        line = json.loads(text)
        (d, t), final, fixed, (td, tt) = line["result"]
        result: Judged = ((d, t), final, {int(h): v for h, v in fixed.items()}, (td, tt))
        found.setdefault((line["scenario"], float(line["rps"])), {})[int(line["seed"])] = result
    return {key: [runs[s] for s in sorted(runs)] for key, runs in found.items()}


def run(
    seeds: int,
    rates: tuple[float, ...],
    workers: int = 1,
    log: Path | None = None,
    recorded: dict[tuple[str, float], list[Judged]] | None = None,
) -> list[dict[str, object]]:
    """The table's rows: each scenario judged for `seeds` seeds, or (`recorded`) the runs of a log."""
    rows: list[dict[str, object]] = []
    groups = [(rps, [i for i, sc in enumerate(SCENARIOS) if sc.rps is None]) for rps in rates]
    # A fixed-rate group per rate and policy: the fixed horizon is calibrated on each group's bad scenarios.
    fixed_groups = sorted({(sc.rps, sc.policy) for sc in SCENARIOS if sc.rps is not None})
    groups += [
        (rps, [i for i, sc in enumerate(SCENARIOS) if (sc.rps, sc.policy) == (rps, name)])
        for rps, name in fixed_groups
    ]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for rps, indices in groups:
            raw: dict[str, dict[str, Any]] = {}
            for index in indices:
                sc = SCENARIOS[index]
                started = time.perf_counter()
                if recorded is not None:
                    results = recorded.get((sc.name, rps), [])
                else:
                    results = _judged(pool, index, rps, seeds, log)
                if not results:
                    continue
                raw[sc.name] = {
                    "ours": [r[0] for r in results],
                    "final": [r[1] for r in results],
                    "fixed": {h: [r[2][h] for r in results] for h in HORIZONS_S},
                    "thresh": [r[3] for r in results],
                }
                print(f"  {rps:g} rps, {sc.name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
            scenarios = [SCENARIOS[i] for i in indices if SCENARIOS[i].name in raw]
            if not scenarios:
                continue
            horizon = _calibrated_horizon(raw, scenarios)
            for sc in scenarios:
                r = raw[sc.name]
                rows.append(_row(sc, rps, "canaryflow", r["ours"], r["final"]))
                fixed = [(d, float(horizon)) for d in r["fixed"][horizon]]
                rows.append(_row(sc, rps, f"fixed-horizon MWU ({horizon:.0f}s)", fixed))
                rows.append(_row(sc, rps, "threshold (Argo-style)", r["thresh"]))
    return rows


def _calibrated_horizon(raw: dict[str, dict[str, Any]], scenarios: list[Scenario]) -> int:
    """The shortest horizon whose false promotions stay within 5% on every bad scenario of the group
    (the longest, 1,800 s, for a group without a bad scenario: nothing to calibrate on)."""
    if not any(sc.truth == "bad" for sc in scenarios):
        return HORIZONS_S[-1]
    for h in HORIZONS_S:
        worst = max(
            (
                np.mean([d == "promote" for d in raw[sc.name]["fixed"][h]])
                for sc in scenarios
                if sc.truth == "bad"
            ),
            default=0.0,
        )
        if worst <= 0.05:
            return h
    return HORIZONS_S[-1]


def _row(
    sc: Scenario, rps: float, judge: str, results: list[tuple[str, float]], final: list[str] | None = None
) -> dict[str, object]:
    """Rates of the final outcome (after the watch, for canaryflow); time of the traffic decision."""
    decisions = final if final is not None else [d for d, _ in results]
    times = [t for _, t in results]
    n = len(decisions)
    watch_rollbacks = sum(
        d == "promote" and f == "rollback" for (d, _), f in zip(results, decisions, strict=True)
    )
    return {
        "steady": sc.steady,
        "watch_rollback": watch_rollbacks / n,
        "scenario": sc.name,
        "policy": sc.policy,
        "truth": sc.truth,
        "rps": rps,
        "judge": judge,
        "runs": n,
        "rollback": sum(d == "rollback" for d in decisions) / n,
        "promote": sum(d == "promote" for d in decisions) / n,
        "inconclusive": sum(d == "inconclusive" for d in decisions) / n,
        "median_time_s": float(np.median(times)),
    }


def print_table(rows: list[dict[str, object]]) -> None:
    head = (
        f"| {'rps':>4} | {'scenario':<38} | {'truth':<5} | {'judge':<26} | {'false rb':>8} |"
        f" {'false pr':>8} | {'inconcl':>7} | {'watch rb':>8} | {'median s':>8} |"
    )
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        false_rb = f"{r['rollback']:.1%}" if r["truth"] == "good" else "-"
        false_pr = f"{r['promote']:.1%}" if r["truth"] == "bad" else "-"
        if r["truth"] == "srm":
            false_rb = f"{r['rollback']:.1%}*"
            false_pr = f"{r['promote']:.1%}*"
        watch = f"{r['watch_rollback']:.1%}" if r["judge"] == "canaryflow" else "-"
        print(
            f"| {r['rps']:>4g} | {r['scenario']:<38} | {r['truth']:<5} | {r['judge']:<26} | {false_rb:>8} |"
            f" {false_pr:>8} | {r['inconclusive']:>7.1%} | {watch:>8} | {r['median_time_s']:>8.0f} |"
        )


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, each with the figure that meets or misses it."""
    ours = {(r["rps"], r["scenario"]): r for r in rows if r["judge"] == "canaryflow"}
    fixed = {(r["rps"], r["scenario"]): r for r in rows if r["judge"].startswith("fixed")}
    lines = []
    for (rps, name), r in ours.items():
        sc = next(s for s in SCENARIOS if s.name == name)
        policy = _policy("default" if sc.policy == "auto" else sc.policy)
        if sc.sigma != SIGMA or sc.tail_5_20 or sc.rps in (5.0,) or (sc.rps and sc.policy == "auto"):
            ok = r["inconclusive"] <= 0.10 and r["rollback"] <= 0.01
            lines.append(
                f"{'met ' if ok else 'MISS'} {rps:g} rps {name}: inconclusive {r['inconclusive']:.1%} <= 10%,"
                f" false rollback {r['rollback']:.1%} <= 1%"
            )
            continue
        if sc.whole:
            ok = r["rollback"] >= 0.95 if sc.truth == "bad" else r["rollback"] <= 0.01
            goal = ">= 95%" if sc.truth == "bad" else "<= 1%"
            lines.append(
                f"{'met ' if ok else 'MISS'} {rps:g} rps {name}: rolled back {r['rollback']:.1%} {goal}"
            )
            continue
        if sc.cold[0] > 1.0 and sc.cold[0] <= 3.0 and sc.cold[1] <= 120.0:
            ok = r["rollback"] <= 0.01
            lines.append(
                f"{'met ' if ok else 'MISS'} {rps:g} rps {name}: false rollback {r['rollback']:.1%} <= 1%"
            )
        if sc.leak[0] >= 1.25 and sc.leak[1] <= policy.max_duration_s:
            ok = r["promote"] <= 0.05
            lines.append(
                f"{'met ' if ok else 'MISS'} {rps:g} rps {name}: false promotion {r['promote']:.1%} <= 5%"
            )
        if sc.steady and sc.truth != "srm":
            half = 0.5 * fixed[rps, name]["median_time_s"]
            budget = (
                policy.error_budget.false_rollback
                if sc.truth == "good"
                else policy.error_budget.false_promote
            )
            if "tolerance" in name:
                budget = policy.error_budget.false_rollback_at_tolerance
            err = r["rollback"] if sc.truth == "good" else r["promote"]
            ok = r["median_time_s"] <= half and err <= budget
            verdict = "met " if ok else "MISS"
            lines.append(
                f"{verdict} {rps:g} rps {name}: median {r['median_time_s']:.0f} s <= {half:.0f} s"
                f" (half the fixed horizon), error {err:.1%} <= {budget:.0%}"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 seeds, 20 rps only (a CI-sized smoke run)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per scenario and rate (default 100)")
    parser.add_argument("--rates", type=float, nargs="+", default=None, help="requests/s (default 20 200)")
    parser.add_argument("--jobs", "--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument(
        "--only", default="", help="run the scenarios whose name contains this text (several: a|b)"
    )
    parser.add_argument(
        "--no-low-traffic", action="store_true", help="leave out the fixed low-rate scenarios"
    )
    parser.add_argument("--log", type=Path, help="append each judged run to this JSON-lines file")
    parser.add_argument("--from-log", type=Path, help="no new runs: the table of the runs a --log file holds")
    args = parser.parse_args()
    seeds = args.seeds or (5 if args.quick else 100)
    rates = tuple(args.rates or ((20.0,) if args.quick else (20.0, 200.0)))
    global SCENARIOS
    SCENARIOS = tuple(
        sc
        for sc in SCENARIOS
        if any(part in sc.name for part in args.only.split("|"))
        and not (args.no_low_traffic and sc.rps is not None)
    )
    started = time.perf_counter()
    recorded = read_log(args.from_log) if args.from_log else None
    rows = run(seeds, rates, args.jobs, args.log, recorded)
    if recorded is not None:  # the runs the log holds, not --seeds
        seeds = max((len(runs) for runs in recorded.values()), default=0)
    print_table(rows)
    print(
        f"\n{seeds} seeds per scenario and rate; {time.perf_counter() - started:.0f} s. "
        "* starved canary: any decision is wrong (the split is not the configured one). "
        "false rb / false pr: final outcome, after the watch; watch rb: promoted, then rolled back by "
        "the watch; median s: time of the traffic decision (promotion after the bake, or rollback)."
    )
    print("\nTargets:")
    for line in targets(rows):
        print("  " + line)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    name = "analysis-" + "-".join(f"{r:g}" for r in rates) + "rps.json"
    (out / name).write_text(json.dumps({"seeds": seeds, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
