"""Drift-monitor benchmark: the real model's embeddings of held-apart topic sentence sets, judged in
simulated months of hourly windows by canaryflow's drift checks (the same code as the controller's
monitor and `canaryflow monitor replay`, default policy) and by the seed's mean-threshold script.

Traffic: every hour the prediction log samples WINDOW records (1% of ~4 requests/s). The champion's
normal traffic mixes four base topics (support, travel, cooking, sports), each a pool of distinct
sentences; the new topics are held apart from them. The reference is the first day (24 windows); later
windows are fresh draws from the same pools (with --split, from the other half of each pool: two
different finite samples of a topic, which is a real if small difference). Each record's `tokens` is
the real tokenizer's count; its latency is simulated (lognormal around 5 ms + 0.2 ms a token, times a
+-15% daily load cycle): this is an embedding benchmark, latency only has to behave like a server's.

Scenarios, drift starting ONSET_H hours after the reference day:
- no drift: fresh samples of the base mixture for a whole month (720 windows): false alarms per month;
- topic shift: 30% of traffic switches to three new topics (finance, medicine, programming);
- length shift: 40% of inputs become two or three base sentences joined (about 2.5x the tokens);
- gradual: the new topics are mixed in at 10% more of the traffic every day.
Detection delay is the hours from the onset to the first alarm (the month's end if none).

Mean-threshold baseline (the seed's script): alarm when a window's mean latency > 120 ms or its mean
"confidence" < 0.75; for embeddings the confidence is the mean cosine similarity to the reference
centroid. A second row calibrates that threshold to the reference day (its hourly means minus three
standard deviations), which is what one would do after seeing the first row.

Run: .venv/bin/python bench/monitor.py [--quick] [--months N] [--seeds N]
Embeddings are computed once (CPU, a minute or two) and cached in bench/results/monitor-embeddings.npz.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from canaryflow.app.local.topics import BASE_TOPICS, NEW_TOPICS, pools
from canaryflow.kernel.drift_statistics import Window, calibrate, evaluate
from policies.drift_policy import DriftPolicy, load_drift_policy

RESULTS = Path(__file__).resolve().parent / "results"
WINDOW = 150
HOURS = 720
ONSET_H = 48


def embed_pools(per_topic: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{topic: (embeddings, token counts)} from the real all-MiniLM-L6-v2, cached on disk."""
    cache = RESULTS / f"monitor-embeddings-{per_topic}.npz"
    texts = pools(per_topic, seed=0)
    if cache.is_file():
        data = np.load(cache)
        return {t: (data[f"{t}_emb"], data[f"{t}_tok"]) for t in texts}
    from canaryflow.adapters.model_assets import load_minilm

    model = load_minilm()
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    started = time.perf_counter()
    for topic, sentences in texts.items():
        emb = model.encode(sentences, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        tokens = np.asarray([len(ids) for ids in model.tokenizer(sentences)["input_ids"]], dtype=float)
        out[topic] = (emb.astype(np.float32), tokens)
    print(
        f"embedded {sum(len(v) for v in texts.values())} sentences in {time.perf_counter() - started:.0f} s"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {
        f"{t}_{k}": v for t, (e, tok) in out.items() for k, v in (("emb", e), ("tok", tok))
    }
    np.savez_compressed(cache, **arrays)
    return out


class Traffic:
    """Draws hourly windows from each topic's pool; with `split`, the reference from one half of each
    pool and later windows from the other (two different finite samples of the topic)."""

    def __init__(self, data: dict[str, tuple[np.ndarray, np.ndarray]], seed: int, split: bool) -> None:
        self.rng = np.random.default_rng(seed)
        self.halves: dict[str, tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {}
        for topic, (emb, tok) in data.items():
            order = self.rng.permutation(len(tok))
            a, b = (order[: len(order) // 2], order[len(order) // 2 :]) if split else (order, order)
            self.halves[topic] = ((emb[a], tok[a]), (emb[b], tok[b]))

    def window(self, hour: int, *, reference: bool, new_topic: float = 0.0, long: float = 0.0) -> Window:
        half = 0 if reference else 1
        u = self.rng.random(WINDOW)
        kinds = np.where(u < new_topic, 1, np.where(u < new_topic + long, 2, 0))
        emb, tok = [], []
        for kind in kinds:
            if kind == 1:
                topic = NEW_TOPICS[self.rng.integers(len(NEW_TOPICS))]
            elif kind == 2:
                topic = "long"
            else:
                topic = BASE_TOPICS[self.rng.integers(len(BASE_TOPICS))]
            e, t = self.halves[topic][half]
            i = self.rng.integers(len(t))
            emb.append(e[i])
            tok.append(t[i])
        tokens = np.asarray(tok)
        load = 1.0 + 0.15 * np.sin(2 * np.pi * (hour % 24) / 24)
        latency = self.rng.lognormal(np.log(5.0 + 0.2 * tokens), 0.3) * load
        return Window(np.asarray(emb, dtype=float), tokens, latency)


def reference_day(traffic: Traffic) -> Window:
    days = [traffic.window(h, reference=True) for h in range(24)]
    return Window(
        *(np.concatenate([getattr(w, f) for w in days]) for f in ("embeddings", "tokens", "latency_ms"))
    )


def drift_at(scenario: str, hours_after_onset: int) -> dict[str, float]:
    if hours_after_onset < 0 or scenario == "no drift":
        return {}
    if scenario == "topic shift":
        return {"new_topic": 0.3}
    if scenario == "length shift":
        return {"long": 0.4}
    return {"new_topic": min(1.0, 0.1 * (hours_after_onset + 1) / 24)}  # gradual: +10% a day


def run_month(data, scenario: str, seed: int, policy: DriftPolicy, split: bool = False) -> dict[str, Any]:
    """One simulated month (a drift scenario stops 10 days after its onset: enough to see it)."""
    traffic = Traffic(data, seed, split)
    ref = reference_day(traffic)
    t = time.perf_counter()
    reference = calibrate(policy, ref)
    calibrate_s = time.perf_counter() - t
    centroid = ref.embeddings.mean(axis=0)
    centroid /= np.linalg.norm(centroid)
    hourly = [float((ref.embeddings[i : i + WINDOW] @ centroid).mean()) for i in range(0, ref.size, WINDOW)]
    calibrated = float(np.mean(hourly) - 3 * np.std(hourly, ddof=1))
    onset = ONSET_H if scenario != "no drift" else HOURS
    last = HOURS if scenario == "no drift" else min(HOURS, onset + 240)
    ours: list[int] = []
    fired: list[str] = []
    seed_rule: list[int] = []
    calibrated_rule: list[int] = []
    eval_s = 0.0
    looks = 0
    for hour in range(last):
        window = traffic.window(hour, reference=False, **drift_at(scenario, hour - onset))
        t = time.perf_counter()
        verdict = evaluate(reference, window)
        eval_s += time.perf_counter() - t
        looks += 1
        confidence = float((window.embeddings @ centroid).mean())
        if verdict.drift:
            ours.append(hour)
            if len(ours) == 1:
                fired = [c.name for c in verdict.checks if c.drift]
        if window.latency_ms.mean() > 120.0 or confidence < 0.75:
            seed_rule.append(hour)
        if window.latency_ms.mean() > 120.0 or confidence < calibrated:
            calibrated_rule.append(hour)
    return {
        "scenario": scenario, "seed": seed, "onset_h": onset, "looks": looks, "calibrate_s": calibrate_s,
        "eval_ms": 1000 * eval_s / looks, "ours": ours, "first_checks": fired, "seed_rule": seed_rule,
        "calibrated_rule": calibrated_rule, "calibrated_threshold": calibrated,
        "reference_confidence": float(np.mean(hourly)),
    }  # fmt: skip


def delay(alarms: list[int], onset: int) -> float | None:
    after = [h - onset for h in alarms if h >= onset]
    return float(after[0]) if after else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for scenario in dict.fromkeys(r["scenario"] for r in runs):
        rs = [r for r in runs if r["scenario"] == scenario]
        row: dict[str, Any] = {"runs": len(rs)}
        for rule in ("ours", "seed_rule", "calibrated_rule"):
            if scenario == "no drift":
                row[f"{rule}_false_alarms_per_month"] = float(np.mean([len(r[rule]) for r in rs]))
                row[f"{rule}_false_alarms_max"] = max(len(r[rule]) for r in rs)
            else:
                delays = [delay(r[rule], r["onset_h"]) for r in rs]
                found = [d for d in delays if d is not None]
                row[f"{rule}_detected"] = f"{len(found)}/{len(rs)}"
                row[f"{rule}_delay_h_median"] = float(np.median(found)) if found else None
                row[f"{rule}_delay_h_max"] = float(max(found)) if found else None
        row["first_checks"] = sorted({c for r in rs for c in r["first_checks"]})
        row["eval_ms"] = float(np.mean([r["eval_ms"] for r in rs]))
        row["calibrate_s"] = float(np.mean([r["calibrate_s"] for r in rs]))
        row["reference_confidence"] = float(np.mean([r["reference_confidence"] for r in rs]))
        out[scenario] = row
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def print_table(summary: dict[str, Any]) -> None:
    head = ("scenario", "runs", "rule", "false alarms/month", "detected", "delay h (median)", "delay h (max)")
    print(" | ".join(head))
    for scenario, row in summary.items():
        for rule, label in (("ours", "canaryflow"), ("seed_rule", "mean threshold 0.75"),
                            ("calibrated_rule", "mean threshold (calibrated)")):  # fmt: skip
            cells = (scenario, row["runs"], label, row.get(f"{rule}_false_alarms_per_month"),
                     row.get(f"{rule}_detected"), row.get(f"{rule}_delay_h_median"),
                     row.get(f"{rule}_delay_h_max"))  # fmt: skip
            print(" | ".join(_fmt(v) for v in cells))
    first = next(iter(summary.values()))
    cost = f"cost: {first['calibrate_s'] * 1000:.0f} ms to calibrate, {first['eval_ms']:.1f} ms a look"
    print(f"{cost}; reference mean cosine to its centroid {first['reference_confidence']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size: 2 no-drift months, 2 seeds per drift")
    parser.add_argument("--months", type=int, default=None, help="no-drift months (default 10; quick 2)")
    parser.add_argument(
        "--seeds", type=int, default=None, help="runs per drift scenario (default 5; quick 2)"
    )
    parser.add_argument(
        "--split", action="store_true", help="reference and later windows from different halves of each pool"
    )
    parser.add_argument("--per-topic", type=int, default=None, help="sentences per topic (800; quick 300)")
    args = parser.parse_args()
    months = args.months or (2 if args.quick else 10)
    seeds = args.seeds or (2 if args.quick else 5)
    policy = load_drift_policy("default")
    data = embed_pools(args.per_topic or (300 if args.quick else 800))
    started = time.perf_counter()
    runs = [run_month(data, "no drift", 100 + s, policy, args.split) for s in range(months)]
    for scenario in ("topic shift", "length shift", "gradual"):
        runs += [run_month(data, scenario, 200 + s, policy, args.split) for s in range(seeds)]
    summary = summarise(runs)
    print_table(summary)
    took = time.perf_counter() - started
    print(f"policy: {policy.name}, alpha per check and look {policy.alpha_per_check:.2e}; {took:.0f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"monitor{'-quick' if args.quick else ''}{'-split' if args.split else ''}.json"
    doc = {"policy": policy.model_dump(), "window": WINDOW, "onset_h": ONSET_H, "split": args.split,
           "summary": summary, "runs": runs}  # fmt: skip
    out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
