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
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from canaryflow.kernel.analysis.replay import RequestLog, replay_log
from policies import Policy, load_policy

MEDIAN_MS = 20.0
SIGMA = 0.35
BASE_ERROR = 0.005
CANARY_SHARE = 0.10
DURATION_S = 1800.0
HORIZONS_S = (15, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600, 900, 1200, 1800)


@dataclass(frozen=True)
class Scenario:
    name: str
    truth: str  # "good": rolling back is an error; "bad": promoting is an error; "srm": should not decide
    latency_shift: float = 1.0
    error_shift: float = 0.0
    load_swings: bool = False
    bursts: bool = False
    canary_share: float = CANARY_SHARE
    heavy_tail: bool = False


SCENARIOS = (
    Scenario("A/A (same version)", "good"),
    Scenario("latency +10% (tolerance)", "good", latency_shift=1.10),
    Scenario("errors +0.5 pt (tolerance)", "good", error_shift=0.005),
    Scenario("latency +25%", "bad", latency_shift=1.25),
    Scenario("latency +100%", "bad", latency_shift=2.0),
    Scenario("errors +2 points", "bad", error_shift=0.02),
    Scenario("load swings, A/A", "good", load_swings=True),
    Scenario("bursts, A/A", "good", bursts=True),
    Scenario("heavy tails, A/A", "good", heavy_tail=True),
    Scenario("starved canary (3%)", "srm", canary_share=0.03),
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
    return mult, err


def simulate(sc: Scenario, rps: float, seed: int) -> RequestLog:
    rng = np.random.default_rng(seed)
    peak = rps * (1.6 if sc.load_swings else 1.0)
    n = rng.poisson(peak * DURATION_S)
    t = np.sort(rng.uniform(0.0, DURATION_S, n))
    if sc.load_swings:  # thinning: arrivals follow the load
        t = t[rng.random(n) < (1.0 + 0.6 * np.sin(2 * np.pi * t / 600.0)) / 1.6]
    n = t.shape[0]
    canary = np.asarray(rng.random(n) < sc.canary_share, dtype=np.bool_)
    mult, err = _load(t, sc)
    latency = rng.lognormal(np.log(MEDIAN_MS), SIGMA, n) * mult
    if sc.heavy_tail:
        tail = rng.random(n) < 0.05
        latency = np.where(tail, latency * (1.0 + rng.pareto(1.5, n)), latency)
    latency = np.where(canary, latency * sc.latency_shift, latency)
    ok = rng.random(n) >= np.clip(err + np.where(canary, sc.error_shift, 0.0), 0, 1)
    return RequestLog(t=t, canary=canary, latency_s=latency / 1000.0, ok=ok)


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
def _policy(guard: bool = True) -> Policy:
    """The default policy; without its 60 s minimum step time, to show what the statistics alone need."""
    policy = load_policy("default")
    if guard:
        return policy
    steps = [step.model_copy(update={"min_duration_s": 0.0}) for step in policy.steps]
    return policy.model_copy(update={"steps": steps})


Decided = tuple[str, float]


def judge_one(job: tuple[int, float, int]) -> tuple[Decided, Decided, dict[int, str], Decided]:
    """All judges on one simulated log (a worker's unit of work)."""
    index, rps, seed = job
    log = simulate(SCENARIOS[index], rps, seed * 7919 + int(rps))
    ours = []
    for guard in (True, False):
        verdict = replay_log(_policy(guard), log, start_s=0.0)
        ours.append(
            (verdict.decision, verdict.decided_at_s if verdict.decided_at_s is not None else DURATION_S)
        )
    return ours[0], ours[1], {h: fixed_horizon(log, h) for h in HORIZONS_S}, threshold_analysis(log)


def run(seeds: int, rates: tuple[float, ...], workers: int = 1) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for rps in rates:
            raw: dict[str, dict[str, Any]] = {}
            for index, sc in enumerate(SCENARIOS):
                started = time.perf_counter()
                results = pool.map(judge_one, [(index, rps, seed) for seed in range(seeds)])
                raw[sc.name] = {
                    "ours": [r[0] for r in results],
                    "ours_unguarded": [r[1] for r in results],
                    "fixed": {h: [r[2][h] for r in results] for h in HORIZONS_S},
                    "thresh": [r[3] for r in results],
                }
                print(f"  {rps:g} rps, {sc.name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
            horizon = _calibrated_horizon(raw)
            for sc in SCENARIOS:
                r = raw[sc.name]
                rows.append(_row(sc, rps, "canaryflow", r["ours"]))
                rows.append(_row(sc, rps, "canaryflow, no 60 s guard", r["ours_unguarded"]))
                fixed = [(d, float(horizon)) for d in r["fixed"][horizon]]
                rows.append(_row(sc, rps, f"fixed-horizon MWU ({horizon:.0f}s)", fixed))
                rows.append(_row(sc, rps, "threshold (Argo-style)", r["thresh"]))
    return rows


def _calibrated_horizon(raw: dict[str, dict[str, list]]) -> int:
    for h in HORIZONS_S:
        worst = max(
            np.mean([d == "promote" for d in raw[sc.name]["fixed"][h]])
            for sc in SCENARIOS
            if sc.truth == "bad"
        )
        if worst <= 0.05:
            return h
    return HORIZONS_S[-1]


def _row(sc: Scenario, rps: float, judge: str, results: list[tuple[str, float]]) -> dict[str, object]:
    decisions = [d for d, _ in results]
    times = [t for _, t in results]
    n = len(decisions)
    return {
        "scenario": sc.name,
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
        f"| {'rps':>4} | {'scenario':<26} | {'truth':<5} | {'judge':<26} | {'false rb':>8} |"
        f" {'false pr':>8} | {'inconcl':>7} | {'median s':>8} |"
    )
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        false_rb = f"{r['rollback']:.1%}" if r["truth"] == "good" else "-"
        false_pr = f"{r['promote']:.1%}" if r["truth"] == "bad" else "-"
        if r["truth"] == "srm":
            false_rb = f"{r['rollback']:.1%}*"
            false_pr = f"{r['promote']:.1%}*"
        print(
            f"| {r['rps']:>4.0f} | {r['scenario']:<26} | {r['truth']:<5} | {r['judge']:<26} | {false_rb:>8} |"
            f" {false_pr:>8} | {r['inconclusive']:>7.1%} | {r['median_time_s']:>8.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 seeds, 20 rps only (about a minute)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per scenario and rate (default 200)")
    parser.add_argument("--rates", type=float, nargs="+", default=None, help="requests/s (default 20 200)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    args = parser.parse_args()
    seeds = args.seeds or (20 if args.quick else 200)
    rates = tuple(args.rates or ((20.0,) if args.quick else (20.0, 200.0)))
    started = time.perf_counter()
    rows = run(seeds, rates, args.workers)
    print_table(rows)
    print(
        f"\n{seeds} seeds per scenario and rate; {time.perf_counter() - started:.0f} s. "
        "* starved canary: any decision is wrong (the split is not the configured one)."
    )
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    name = "analysis-" + "-".join(f"{r:g}" for r in rates) + "rps.json"
    (out / name).write_text(json.dumps({"seeds": seeds, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
