"""Many versions on one device (issue 27, overcommit): more versions than fit on the device,
traffic skewed across them, versions moved to host memory and brought back on demand.

One server (`canaryflow serve --routing-file`, one process) serves V versions, each its own copy of
one model folder's weights, addressed as `minilm/<v>`. In one run:

1. all resident: no budget; Zipf(s) traffic over the V versions (version of rank r asked with
   probability ∝ r^-s) at C connections, driven by wrk: sentences/s, p50/p99;
2. overcommit: the same versions with room for `fit` = V/ratio of them (`--ratio 4`: four times
   more versions than fit) and the same traffic: sentences/s against all resident, p99, and
   the hit rate, 1 - loads/batches from the server's own counters (the cache is asked once per
   batch: a batch whose version was resident is a hit); the hot set's throughput: the sentences/s
   of the `fit` most asked versions (their share of the texts the server embedded, from its
   per-version batch counters) against the same versions' all resident; and the versions resident
   while it ran (`canaryflow_cache_resident_versions`, read every half second, in both loads).

   Each load runs twice: mixed (one closed loop over all versions) and split (hot versions on
   connections of their own, the rest on the others, shared out by the hot set's Zipf share:
   bench/overcommit_split.py), the hot set's figure of each against the same traffic all resident.
   In one closed loop a connection waiting on a cold version's bring-back sends no hot request, so
   the mixed figure measures the generator's coupling as well as the server.

   The room is `--cap count` by default: at most `fit` versions resident (`canaryflow serve
   --max-resident-versions fit`), exact, one server start. `--cap bytes` binds it by a budget in
   bytes instead, measured, not guessed (bench/overcommit_budget.py). Under a budget (or a count)
   the server runs versions on weight slots (inference/models/weight_slots.py: a bring-back copies
   weights and captures nothing), and a slot holds only the graphs captured on it so far: a version
   costs another amount than without a budget, where it has its own graphs of every bucket (on an
   H100 8 versions once fitted "a budget for 2" sized from that, and nothing was brought back). So
   the first budget, room for `fit` and a half versions as one cost all resident, is only a guess:
   after its warm-up, the server's own count of what one resident version holds under it
   (`canaryflow_cache_device_bytes{holder="versions"}` over the resident versions, read at the
   scrape, graph pools included) says whether it has room for `fit` of them and not one more; if
   not, the budget is sized again from that cost and the server restarted (`--tries`, each try in
   the JSON's `sizing`; `--first-budget-mb` replaces the first guess, e.g. with a cost a run before
   measured). A run whose budget was never sized so, or in whose measured seconds no version was
   brought back (`budget_bound`), fails (with `--cap count`, only the latter);

Both loads are measured only once the server stopped capturing CUDA graphs: the same traffic runs
in warm-up rounds of `--warmup-s` until one captured none (`canaryflow_graph_captures_total`, at
most `--settle-s`), and the captures during the measured phase are reported beside it (a GPU run
whose "all resident" overlapped captures would compare against a slowed baseline);
3. bringing a version back: one client, one request at a time, each to the version used longest
   ago (so each one finds its version evicted), then the same version again (resident now); each
   request's kind read exactly from the loads counter around it: p50/p99 of a request that brings
   its version back, and of one that does not. It starts once the server's background captures
   (the slots' remaining buckets, captured in idle spells) stopped, and reports those made during.

On a CPU the device is host memory, so moving a version is bookkeeping only: a CPU run proves the
mechanism (evictions, loads, hit rate, every answer 200), a GPU run gives the figures.

    .venv/bin/python bench/overcommit.py --device cpu --versions 4 --ratio 4 --concurrency 4 \
        --measure-s 4 --probes 6 --out /tmp/overcommit.json              # CPU: the mechanism
    .venv/bin/python bench/overcommit.py --device cpu --versions 4 --ratio 4 --concurrency 4 \
        --measure-s 4 --probes 6 --cap bytes --first-budget-mb 1000 --out /tmp/oc.json  # sized again
    python3 bench/overcommit.py --model .assets/minilm-fp16 --device cuda --versions 16 \
        --out $OUT/overcommit.json                                        # GPU: the figures
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.arrival import MODEL  # noqa: E402
from bench.arrival import routing_yaml as weighted_routing  # noqa: E402
from bench.loadgen import Target, make_sentences, percentile  # noqa: E402
from bench.loadgen_wrk import _run as run_wrk  # noqa: E402
from bench.loadgen_wrk import find_wrk, parse_wrk_output  # noqa: E402
from bench.overcommit_budget import Residency, budget_for, check, sampled, spread  # noqa: E402
from bench.overcommit_split import Streams, split_streams, write_bodies, zipf_among  # noqa: E402
from bench.serving import free_port, gpu_memory_used_mib, metric_samples, stop_server, wait_ready  # noqa: E402
from canaryflow.kernel.contracts import metrics as names  # noqa: E402


def zipf_versions(count: int, versions: int, s: float, seed: int) -> list[str]:
    """`count` versions "1".."V" drawn with probability ∝ rank^-s (version "1" the most asked)."""
    return zipf_among(count, range(1, versions + 1), s, seed)


def routing_yaml(model_dir: Path, versions: int) -> str:
    """Every version the same folder (each loaded as its own copy); all traffic names its version."""
    return weighted_routing(model_dir, {str(v): 100 if v == 1 else 0 for v in range(1, versions + 1)})


CAPTURES = "captures"  # the row of process-wide series (no version label) in `metric_sums`
SERIES = ("loads", "batches", "texts")
MIB = 2**20


def metric_sums(port: int) -> dict[str, dict[str, float]]:
    """Per version: model loads, batches and texts now, from `/metrics`; under CAPTURES, the CUDA
    graphs the server captured so far."""
    wanted = {
        names.MODEL_LOADS + "_total": "loads",
        names.BATCH_SIZE + "_count": "batches",
        names.BATCH_SIZE + "_sum": "texts",
    }
    out: dict[str, dict[str, float]] = {CAPTURES: {"captures": 0.0}}
    for sample in metric_samples(port):
        if sample.name == names.GRAPH_CAPTURES + "_total":
            out[CAPTURES]["captures"] += sample.value
        key = wanted.get(sample.name)
        version = sample.labels.get("version")
        if key is not None and version is not None:
            row = out.setdefault(version, dict.fromkeys(SERIES, 0.0))
            row[key] += sample.value
    return out


def residency(port: int) -> Residency:
    """What the server's budget counts now (`canaryflow_cache_*`: read at the scrape)."""
    return Residency.of(metric_samples(port))


def total(sums: dict[str, dict[str, float]], key: str, versions: set[str] | None = None) -> float:
    return sum(
        row.get(key, 0.0)
        for version, row in sums.items()
        if version != CAPTURES and (versions is None or version in versions)
    )


def captures(sums: dict[str, dict[str, float]]) -> float:
    return sums[CAPTURES]["captures"]


def start(
    args: argparse.Namespace, routing: Path, budget_mb: float | None, max_resident: int | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    launcher = "import typer; from canaryflow.app.commands.serve import serve; typer.run(serve)"
    cmd = [
        sys.executable, "-c", launcher, "--routing-file", str(routing), "--port", str(port),
        "--workers", str(args.workers), "--device", args.device, *args.server_arg,
    ]  # fmt: skip
    if budget_mb is not None:
        cmd += ["--gpu-memory-budget-mb", f"{budget_mb:.1f}"]
    if max_resident is not None:
        cmd += ["--max-resident-versions", str(max_resident)]
    print("server:", " ".join(cmd[3:]), flush=True)
    server = subprocess.Popen(cmd, cwd=ROOT)
    wait_ready(port, server, timeout_s=args.ready_timeout_s)
    return server, port


def settle(port: int, args: argparse.Namespace, wrk: str, bodies: Path) -> tuple[dict[str, Any], Residency]:
    """Warm-up rounds of the measured traffic until one captured no CUDA graph (or `--settle-s`);
    and what the budget counts after them (a version's cost read while the last round ran when
    none is resident once it ended: one costs more than the whole budget)."""
    target = Target(port, "/v1/embeddings", MODEL)
    started = time.monotonic()
    rounds = []
    while True:
        before = captures(metric_sums(port))
        with sampled(lambda: residency(port)) as during:
            run_wrk(wrk, target, args.concurrency, args.threads, math.ceil(args.warmup_s), bodies)
        captured = captures(metric_sums(port)) - before
        rounds.append(captured)
        if captured == 0 or time.monotonic() - started >= args.settle_s:
            break
    after = residency(port)
    if not after.versions:
        after = next((r for r in reversed(during) if r.versions), after)
    summary = {
        "rounds": len(rounds),
        "captures": rounds,
        "s": time.monotonic() - started,
        "settled": captured == 0,
        "resident_versions": after.versions,
        "version_mb": None if after.version_cost is None else after.version_cost / MIB,
        "idle_slot_mb": after.idle_slot_bytes / MIB,
        "gpu_memory_used_mib": gpu_memory_used_mib() if args.device.startswith("cuda") else None,
    }
    print(f"warm-up: {len(rounds)} round(s) in {summary['s']:.0f} s, graphs captured {rounds}; "
          f"{after.versions} version(s) resident, one {summary['version_mb'] or 0:.1f} MB",
          flush=True)  # fmt: skip
    return summary, after


def zipf_load(port: int, args: argparse.Namespace, wrk: str, bodies: Path, hot: set[str]) -> dict[str, Any]:
    """The measured Zipf traffic (after `settle`): throughput, the hot set's, loads and hit rate,
    and the versions resident while it ran (read every half second)."""
    target = Target(port, "/v1/embeddings", MODEL)
    before = metric_sums(port)
    with sampled(lambda: residency(port)) as during:
        found = parse_wrk_output(
            run_wrk(wrk, target, args.concurrency, args.threads, math.ceil(args.measure_s), bodies),
            args.concurrency, args.texts,
        )  # fmt: skip
    after = metric_sums(port)
    loads = total(after, "loads") - total(before, "loads")
    batches = total(after, "batches") - total(before, "batches")
    texts = total(after, "texts") - total(before, "texts")
    hot_texts = total(after, "texts", hot) - total(before, "texts", hot)
    return {
        **found,
        "loads": loads,
        "batches": batches,
        "hit_rate": 1 - loads / batches if batches else None,
        "hot_versions": sorted(hot, key=int),
        "hot_share": hot_texts / texts if texts else None,
        "hot_sentences_per_s": found["sentences_per_s"] * hot_texts / texts if texts else 0.0,
        "captures_at_start": captures(before),
        "captures_at_end": captures(after),
        "resident_versions": spread(during),
    }


def split_load(port: int, args: argparse.Namespace, wrk: str, streams: Streams) -> dict[str, Any]:
    """The same traffic split (bench/overcommit_split.py): hot versions on connections of their own,
    the rest on the others, both at once; each stream's throughput and latency, loads and hit rate
    from the server's counters, and the versions resident while it ran."""
    target = Target(port, "/v1/embeddings", MODEL)

    def drive(bodies: Path, connections: int) -> dict[str, Any]:
        threads = min(args.threads, connections)
        stdout = run_wrk(wrk, target, connections, threads, math.ceil(args.measure_s), bodies)
        return parse_wrk_output(stdout, connections, args.texts)

    before = metric_sums(port)
    with sampled(lambda: residency(port)) as during, ThreadPoolExecutor(2) as pool:
        hot = pool.submit(drive, streams.hot, streams.hot_connections)
        cold = pool.submit(drive, streams.cold, streams.cold_connections)
        rows = {"hot": hot.result(), "cold": cold.result()}
    after = metric_sums(port)
    loads = total(after, "loads") - total(before, "loads")
    batches = total(after, "batches") - total(before, "batches")
    return {
        **rows,
        "hot_connections": streams.hot_connections,
        "cold_connections": streams.cold_connections,
        "zipf_hot_share": streams.zipf_hot_share,
        "sentences_per_s": rows["hot"]["sentences_per_s"] + rows["cold"]["sentences_per_s"],
        "loads": loads,
        "batches": batches,
        "hit_rate": 1 - loads / batches if batches else None,
        "resident_versions": spread(during),
    }


def quiet(port: int, limit_s: float) -> dict[str, Any]:
    """Wait (no traffic) until the server's background captures stopped: the weight slots capture
    their remaining buckets in idle spells, and a probe landing behind one would pay for it."""
    started = time.monotonic()
    first = last = now = captures(metric_sums(port))
    while time.monotonic() - started < limit_s:
        time.sleep(1.0)  # four idle spells (IDLE_S): a capturer with work left captures in it
        now = captures(metric_sums(port))
        if now == last:
            break
        last = now
    return {"captured": last - first, "s": time.monotonic() - started, "quiet": now == last}


def bring_back(port: int, versions: int, probes: int, texts: list[str]) -> dict[str, Any]:
    """Sequential requests, each to the version used longest ago, then to the same one again."""
    waited = quiet(port, limit_s=60)
    captured_before = captures(metric_sums(port))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    cold: list[float] = []
    warm: list[float] = []
    codes: dict[str, int] = {}
    order = [str(v) for v in range(1, versions + 1)]
    for i in range(probes):
        version = order[i % versions]
        for _ in range(2):
            before = total(metric_sums(port), "loads")
            body = json.dumps({"input": texts[i % len(texts)], "model": f"{MODEL}/{version}"})
            started = time.perf_counter()
            conn.request("POST", "/v1/embeddings", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            took_ms = (time.perf_counter() - started) * 1000
            codes[str(response.status)] = codes.get(str(response.status), 0) + 1
            brought = total(metric_sums(port), "loads") > before
            (cold if brought else warm).append(took_ms)
    conn.close()

    def stats(values: list[float]) -> dict[str, Any]:
        if not values:
            return {"count": 0, "p50_ms": None, "p99_ms": None}
        return {"count": len(values), "p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99)}

    during = captures(metric_sums(port)) - captured_before
    return {"brought_back": stats(cold), "resident": stats(warm), "codes": codes,
            "quiet_first": waited, "captures_during": during}  # fmt: skip


def _ratio(value: float, base: float | None) -> float | None:
    return value / base if base else None


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def hot_set_shares(report: dict[str, Any]) -> dict[str, float | None]:
    """The hot set's sentences/s under overcommit against all resident, in mixed traffic (one
    closed loop) and in split traffic (hot and cold on connections of their own), each against the
    same traffic all resident."""
    a, o = report["all_resident"], report["overcommit"]
    mixed = _ratio(o.get("hot_sentences_per_s", 0.0), a.get("hot_sentences_per_s"))
    if "split" not in a or "split" not in o:
        return {"mixed": mixed, "split": None}
    return {"mixed": mixed, "split": _ratio(o["split"]["hot"]["sentences_per_s"],
                                            a["split"]["hot"]["sentences_per_s"])}  # fmt: skip


def _how(report: dict[str, Any]) -> str:
    """How the overcommit phase was bound: a count of resident versions, or a budget in bytes."""
    if report.get("cap") == "count":
        return f"at most {report['max_resident_versions']} versions resident (--max-resident-versions)"
    # Reports before the budget was sized from a version's cost under one have no `sizing`.
    sizing = report.get("sizing", {"tries": [], "limit": 0})
    how = (
        f"try {len(sizing['tries'])} of {sizing['limit']}, one version {report['version_mb']:.1f} MB "
        f"under a budget, {report['all_resident_version_mb']:.1f} MB without; sized: {sizing['sized']}"
        if "sized" in sizing
        else f"sized from one version all resident, {report['version_mb']:.1f} MB; not checked"
    )
    return f"a budget of {report['budget_mb']:.0f} MB ({how})"


def _row(name: str, row: dict[str, Any], base: dict[str, Any] | None, split: bool) -> str:
    """One table row; `base` the same traffic all resident (None: this is it). Split rows give the
    hot stream's sentences/s and latency, and both streams' answer codes."""
    hot = row["hot"]["sentences_per_s"] if split else row.get("hot_sentences_per_s", 0.0)
    base_hot = (base["hot"]["sentences_per_s"] if split else base.get("hot_sentences_per_s")) if base else hot
    share = _ratio(row["sentences_per_s"], base["sentences_per_s"]) if base else 1.0
    hot_share = _ratio(hot, base_hot)
    latency = row["hot"] if split else row
    hit = "-" if row.get("hit_rate") is None else f"{row['hit_rate']:.1%}"
    held = row.get("resident_versions", {})
    resident = f"{held['min']}/{held['mean']:.1f}/{held['max']}" if held.get("samples") else "-"
    captured = (
        "-" if split
        else f"{row.get('captures_at_end', 0.0) - row.get('captures_at_start', 0.0):.0f} "
        f"({row.get('captures_at_start', 0):.0f} before)"
    )  # fmt: skip
    codes = f"hot {row['hot']['codes']}, cold {row['cold']['codes']}" if split else str(row["codes"])
    cells = [
        f"{row['sentences_per_s']:,.0f}", _percent(share), f"{hot:,.0f}", _percent(hot_share),
        f"{latency['p50_ms']:.1f}", f"{latency['p99_ms']:.1f}", hit, f"{row['loads']:.0f}", resident,
        captured, codes,
    ]  # fmt: skip
    return f"| {name} | " + " | ".join(cells) + " |"


def print_table(report: dict[str, Any]) -> None:
    a, o, b = report["all_resident"], report["overcommit"], report["bring_back"]
    print(f"\nDevice: {report['device']}; {report['versions']} versions, room for {report['fit']}: "
          f"{_how(report)}; Zipf s={report['zipf_s']}; "
          f"{report['concurrency']} connections, {report['texts']} text(s) a request")  # fmt: skip
    print(
        "| run | sentences/s | vs all resident | hot set sentences/s | hot set vs all resident | "
        "p50 ms | p99 ms | hit rate (batches) | loads | resident versions (min/mean/max) | "
        "graphs captured in the phase | codes |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    print(_row("all resident, mixed traffic", a, None, split=False))
    print(_row("overcommit, mixed traffic", o, a, split=False))
    if "split" in a and "split" in o:
        print(_row("all resident, split traffic", a["split"], None, split=True))
        print(_row("overcommit, split traffic", o["split"], a["split"], split=True))
    print(f"hot set: versions {', '.join(a.get('hot_versions', []))} (the {report['fit']} most asked)")
    if "split" in o:
        s = o["split"]
        print(f"split traffic: hot versions on {s['hot_connections']} of {report['concurrency']} "
              f"connections (their Zipf share {s['zipf_hot_share']:.0%}), the others on "
              f"{s['cold_connections']}; its rows' p50/p99 are the hot stream's; cold stream p50/p99 "
              f"{s['cold']['p50_ms']:.1f}/"
              f"{s['cold']['p99_ms']:.1f} ms overcommit, {a['split']['cold']['p50_ms']:.1f}/"
              f"{a['split']['cold']['p99_ms']:.1f} ms all resident")  # fmt: skip
    shares = hot_set_shares(report)
    print("hot set vs all resident: "
          + "; ".join(f"{k} traffic {_percent(v)}" for k, v in shares.items())
          + " (mixed: one closed loop, a connection waiting on a bring-back sends no hot request; "
          "split: hot and cold on connections of their own)")  # fmt: skip
    for t in report.get("sizing", {}).get("tries", []):
        print(f"budget try {t['try']}: {t['budget_mb']:.1f} MB sized from {t['sized_from']}; after "
              f"warm-up {t['warm_up']['resident_versions']} version(s) resident, one "
              f"{t['warm_up']['version_mb'] or 0:.1f} MB: room for {t['holds'] or 0:.2f} "
              f"({'kept' if t['sized'] else 'sized again'})")  # fmt: skip
    for kind in ("brought_back", "resident"):
        s = b[kind]
        if s["count"]:
            print(f"one request, version {kind.replace('_', ' ')}: p50 {s['p50_ms']:.1f} ms, "
                  f"p99 {s['p99_ms']:.1f} ms ({s['count']} requests; graphs captured meanwhile: "
                  f"{b.get('captures_during', 0):.0f})")  # fmt: skip


def measure(
    port: int,
    args: argparse.Namespace,
    wrk: str,
    load: tuple[Path, Streams],
    report: dict[str, Any],
    out: Path,
) -> None:
    """The overcommit phase's measured traffic (mixed, then split) and the bring-backs, on a server
    that settled under its limit (`report["overcommit"]["warm_up"]` set by the caller)."""
    bodies, streams = load
    hot = {str(v) for v in range(1, report["fit"] + 1)}
    report["overcommit"] = {**zipf_load(port, args, wrk, bodies, hot), **report.get("overcommit", {})}
    report["overcommit"]["split"] = split_load(port, args, wrk, streams)
    out.write_text(json.dumps(report, indent=2))
    report["bring_back"] = bring_back(port, args.versions, args.probes, make_sentences(64, seed=3))


def overcommit(
    args: argparse.Namespace, routing: Path, load: tuple[Path, Streams], wrk: str, report: dict[str, Any],
    out: Path,
) -> None:  # fmt: skip
    """With `--cap count`: at most `fit` versions resident, one server start. With `--cap bytes`:
    under a budget for `fit` versions, the first sized from a version all resident, each next one
    from what a version cost under the one before (after its warm-up), until one holds `fit` of
    them and not one more (`--tries` at most). Then the measured traffic and the bring-backs."""
    fit, bodies = report["fit"], load[0]
    if args.cap == "count":
        report["max_resident_versions"] = fit
        server, port = start(args, routing, None, max_resident=fit)
        try:
            warm_up, _ = settle(port, args, wrk, bodies)
            report["overcommit"] = {"warm_up": warm_up}
            measure(port, args, wrk, load, report, out)
        finally:
            stop_server(server)
        return
    sizing: dict[str, Any] = {"limit": args.tries, "sized": False, "tries": []}
    report["sizing"] = sizing
    budget = budget_for(fit, report["all_resident_version_mb"] * MIB)
    source = f"all resident, no budget: one version {report['all_resident_version_mb']:.1f} MB"
    if args.first_budget_mb is not None:
        budget, source = args.first_budget_mb * MIB, "--first-budget-mb"
    for attempt in range(1, args.tries + 1):
        server, port = start(args, routing, budget / MIB)
        try:
            warm_up, after = settle(port, args, wrk, bodies)
            verdict = check(fit, budget, after.version_cost)
            sizing["tries"].append({
                "try": attempt, "budget_mb": budget / MIB, "sized_from": source, "warm_up": warm_up,
                "holds": verdict.holds, "sized": verdict.sized,
            })  # fmt: skip
            out.write_text(json.dumps(report, indent=2))
            if not verdict.sized and attempt < args.tries:
                print(f"budget {budget / MIB:.1f} MB has room for {verdict.holds or 0:.2f} versions "
                      f"as they cost under it, not {fit}: sized again", flush=True)  # fmt: skip
                source = f"try {attempt}: one resident version {warm_up['version_mb'] or 0:.1f} MB"
                budget = verdict.next_budget
                continue
            sizing["sized"] = verdict.sized
            report["budget_mb"] = budget / MIB
            report["version_mb"] = warm_up["version_mb"] or 0.0
            report["overcommit"] = {"warm_up": warm_up}
            measure(port, args, wrk, load, report, out)
            return
        finally:
            stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model folder (default: the packaged MiniLM)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--versions", type=int, default=16, help="versions served (V)")
    parser.add_argument("--ratio", type=float, default=4.0, help="versions per one that fits the budget")
    parser.add_argument(
        "--cap", choices=("count", "bytes"), default="count",
        help="what binds the overcommit phase: count, at most `fit` versions resident "
        "(--max-resident-versions; exact, one server start), or bytes, a --gpu-memory-budget-mb sized "
        "from a version's measured cost (--tries, --first-budget-mb)",
    )  # fmt: skip
    parser.add_argument("--zipf-s", type=float, default=1.1)
    parser.add_argument("--texts", type=int, default=1, help="texts a request")
    parser.add_argument("--concurrency", type=int, default=64, help="wrk connections (split: hot + cold)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--measure-s", type=float, default=8.0)
    parser.add_argument("--warmup-s", type=float, default=2.0, help="one warm-up round")
    parser.add_argument(
        "--settle-s", type=float, default=120.0, help="warm-up rounds until none captured, at most"
    )
    parser.add_argument(
        "--tries", type=int, default=3,
        help="--cap bytes: server starts to size the budget from a version's cost, at most",
    )  # fmt: skip
    parser.add_argument(
        "--first-budget-mb", type=float, default=None,
        help="--cap bytes: the first try's budget (default: room for fit and a half versions as one "
        "costs all resident); checked and sized again like any",
    )  # fmt: skip
    parser.add_argument("--probes", type=int, default=40, help="requests that bring a version back")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--server-arg", action="append", default=[], help="extra `canaryflow serve` option")
    parser.add_argument("--ready-timeout-s", type=float, default=300)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "overcommit.json"))
    parser.add_argument("--table", default=None, help="print the table of this JSON report and stop")
    args = parser.parse_args()
    if args.table:
        print_table(json.loads(Path(args.table).read_text()))
        return
    if args.versions < 2 or args.ratio <= 1:
        parser.error("--versions must be at least 2 and --ratio above 1 (more versions than fit)")
    if args.tries < 1:
        parser.error("--tries must be at least 1")
    if args.concurrency < 2:
        parser.error("--concurrency must be at least 2 (split traffic: hot and cold connections)")
    if args.cap == "count" and args.first_budget_mb is not None:
        parser.error("--first-budget-mb sizes a budget in bytes: give it with --cap bytes")
    if args.workers != 1:
        parser.error("--workers must be 1: the budget's figures (canaryflow_cache_*) are one process's")
    wrk = find_wrk()
    if wrk is None:
        parser.error("wrk not found: run `bash bench/tools.sh` (unpacks it into .tools/)")
    if args.model is None:
        from canaryflow.adapters.model_assets import minilm_path

        args.model = str(minilm_path())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fit = max(1, int(args.versions / args.ratio))
    report: dict[str, Any] = {
        "device": args.device, "versions": args.versions, "fit": fit, "cap": args.cap,
        "zipf_s": args.zipf_s, "concurrency": args.concurrency, "texts": args.texts,
        "settings": vars(args),
    }  # fmt: skip
    if args.device.startswith("cuda"):
        import torch

        report["device"] = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory(prefix="bench-overcommit-") as tmp:
        routing = Path(tmp) / "routing.yaml"
        routing.write_text(routing_yaml(Path(args.model).resolve(), args.versions))
        bodies = Path(tmp) / "bodies.jsonl"
        write_bodies(bodies, zipf_versions(4096, args.versions, args.zipf_s, seed=11), args.texts)
        streams = split_streams(Path(tmp), args.versions, fit, args.zipf_s, args.texts, args.concurrency)

        hot = {str(v) for v in range(1, fit + 1)}  # the most asked: rank 1..fit
        server, port = start(args, routing, None)
        try:
            warm_up, after = settle(port, args, wrk, bodies)
            report["all_resident"] = {**zipf_load(port, args, wrk, bodies, hot), "warm_up": warm_up}
            report["all_resident"]["split"] = split_load(port, args, wrk, streams)
        finally:
            stop_server(server)
        if after.version_cost is None:
            sys.exit("no version resident without a budget: the server did not load them")
        # A version without a budget, its own graphs and all: the first budget's guess only.
        report["all_resident_version_mb"] = after.version_cost / MIB
        out.write_text(json.dumps(report, indent=2))
        print(f"all resident: {report['all_resident']['sentences_per_s']:,.0f} sentences/s; one "
              f"version {report['all_resident_version_mb']:.1f} MB", flush=True)  # fmt: skip
        overcommit(args, routing, (bodies, streams), wrk, report, out)
    # A limit that held every version asked for measured no overcommit, and a budget sized for
    # another number of versions than `fit` measured another ratio: the rows say so, and the run fails.
    bound = report["overcommit"]["loads"] > 0
    report["overcommit"]["budget_bound"] = bound
    report["hot_set_vs_all_resident"] = hot_set_shares(report)
    out.write_text(json.dumps(report, indent=2))
    print_table(report)
    if not bound:
        print("not an overcommit measurement: no version was brought back in the measured seconds "
              "(every version asked for fitted)", flush=True)  # fmt: skip
    sized = args.cap == "count" or report["sizing"]["sized"]
    if not sized:
        print(f"the budget was not sized for {fit} versions in {args.tries} tries: what a version costs "
              "under it kept moving (sizing.tries says how)", flush=True)  # fmt: skip
    if not bound or not sized:
        sys.exit(1)


if __name__ == "__main__":
    main()
