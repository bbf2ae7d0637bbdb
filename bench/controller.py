"""Controller benchmark: event-to-commit latency, a webhook burst, and many rollouts in one loop.

    .venv/bin/python bench/controller.py [--quick]

Everything is real and on loopback: an `mlflow server` (SQLite) sends the webhooks, the controller is
built by `canaryflow.app.wiring.build_service` (the same composition as `canaryflow controller serve`) with
the local runner and its real steps, the GitOps remote is a bare git repo, and analysis reads a real
Prometheus scraping a traffic generator that speaks the inference servers' metric contract.

1. registry event -> first GitOps commit: an alias set through MlflowClient, delivered by MLflow's
   webhook, until the first traffic-step commit is recorded (p50/p99).
2. burst: N signed deliveries (a share of them repeated ids) posted concurrently; counts what was
   accepted, acknowledged as duplicate, stored, and the time until the inbox is drained.
3. many rollouts: R rollouts reconciled by one controller; loop time per rollout while they commit their
   first step and then while they are in analysis (one Prometheus look each per tick).
4. cadence: N rollouts in analysis at once with the loop running as `controller serve` runs it (looks
   every 5 s): how late each look is judged (p50/p99 against its own time), how many of the looks due
   were judged, and event -> first commit (p50/p99) for new events meanwhile.
5. look cost: the judge's time for a step's new look at minute 1, 5, 10, 20 and 30 of the step
   (the live path, `incremental.advance`) beside judging every look again (`analyze_looks`).
6. loop overhead: the loop's own cost per rollout with steps that do nothing.
7. judged loop: the same loop with the real analysis step and judge, fed synthetic looks (one new
   look per rollout per tick, no Prometheus): a look's cost all in but the reads.

A phase that reconciled or judged nothing fails (exit 1, the reason in the JSON). The JSON is
rewritten (atomically) after every phase, so a run that dies keeps the phases it finished. Run it
under `nice` on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.idle_rollouts import idle_step, seed_rollouts  # noqa: E402
from canaryflow.app.local.gitremote import init_bare_remote  # noqa: E402
from canaryflow.app.local.mlflow_server import start_mlflow  # noqa: E402
from canaryflow.app.local.process import free_port  # noqa: E402
from canaryflow.app.local.prometheus import start_prometheus  # noqa: E402
from canaryflow.kernel.contracts.buckets import LATENCY_BUCKETS_S  # noqa: E402
from controller.webhooks.signing import sign_mlflow  # noqa: E402

SECRET = "bench-secret"
BUCKETS_S = list(LATENCY_BUCKETS_S)
POLICY = """name: bench
traffic_mode: configmap
steps:
  - {weight: 10, min_duration_s: 3600, min_samples: 50}
  - {weight: 50, min_duration_s: 3600, min_samples: 50}
max_duration_s: 86400
evaluate_every_s: 5
min_baseline_samples: 50
sample_ratio: {enabled: false}
"""


class Traffic:
    """The inference servers' /metrics for many models, served by a process of its own: at 1,000
    rollouts its page (2,000 versions, about 220,000 lines every 2 s) shared the controller's
    interpreter, Prometheus' scrapes of it timed out, and its CPU time counted as the controller's."""

    def __init__(self, rate_per_s: float = 200.0) -> None:
        context = get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve_traffic, args=(child, rate_per_s), daemon=True)
        self._process.start()
        self.target = f"127.0.0.1:{self._conn.recv()}"

    def add_model(self, model: str) -> None:
        self._conn.send(model)

    def stop(self) -> None:
        self._conn.send(None)
        self._process.join(10)


def _serve_traffic(conn: Any, rate_per_s: float) -> None:
    """The traffic process: serves the page, adds the models it is sent, stops on None."""
    page = TrafficPage(rate_per_s)
    conn.send(page.httpd.server_port)
    while (model := conn.recv()) is not None:
        page.add_model(model)
    page.httpd.shutdown()


class TrafficPage:
    """The inference servers' /metrics for many models, each version getting ~rate requests/s."""

    def __init__(self, rate_per_s: float = 200.0) -> None:
        self.rate, self.models, self.last = rate_per_s, list[str](), time.time()
        self.counts: dict[tuple[str, str], np.ndarray] = {}
        self.rng = np.random.default_rng(0)
        # Latency ~ lognormal(median 10 ms, sigma 0.3): the probability of each bucket (last: +Inf).
        draws = np.sort(self.rng.lognormal(np.log(0.01), 0.3, size=200_000))
        edges = np.searchsorted(draws, BUCKETS_S, side="right")
        self.bucket_p = np.diff(np.concatenate([[0], edges, [len(draws)]])) / len(draws)
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = outer.page().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add_model(self, model: str) -> None:
        with self.lock:
            for version in ("1", "2"):
                self.counts[(model, version)] = np.zeros(len(BUCKETS_S) + 1, dtype=np.int64)

    def page(self) -> str:
        """Adds the requests served since the last scrape (multinomial over the buckets, all series at
        once) and renders the exposition text."""
        with self.lock:
            now = time.time()
            n = int((now - self.last) * self.rate)
            self.last = now
            keys = list(self.counts)
            if keys and n:
                added = self.rng.multinomial(n, self.bucket_p, size=len(keys))
                for key, row in zip(keys, added, strict=True):
                    self.counts[key] += row
            lines: list[str] = []
            for (model, version), per_bucket in self.counts.items():
                running = np.cumsum(per_bucket)
                labels = f'model="{model}",version="{version}"'
                lines.extend(
                    f'canaryflow_request_duration_seconds_bucket{{{labels},le="{bound}"}} {c}'
                    for bound, c in zip(BUCKETS_S, running[:-1].tolist(), strict=True)
                )
                total = int(running[-1])
                lines.append(f'canaryflow_request_duration_seconds_bucket{{{labels},le="+Inf"}} {total}')
                lines.append(f"canaryflow_request_duration_seconds_count{{{labels}}} {total}")
                lines.append(f"canaryflow_request_duration_seconds_sum{{{labels}}} {total * 0.01}")
                lines.append(f'canaryflow_requests_total{{{labels},code="200"}} {total}')
            return "\n".join(lines) + "\n"


class Live:
    def __init__(self, service: Any) -> None:
        self.service, self.port = service, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(service.app, host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)

    def stop(self) -> None:
        """Stops the server, the loop and every reconcile job: nothing of theirs runs once this
        returns (the temporary directory they write in is removed next)."""
        self.server.should_exit = True
        self.thread.join(10)
        deadline = time.monotonic() + 120
        while not self.service.close(timeout_s=10.0):  # a job in a dependency's call: it times out
            if time.monotonic() > deadline:
                raise PhaseFailed("the controller's jobs did not end within 2 minutes of the stop")


class PhaseFailed(RuntimeError):
    """A phase that measured nothing (reconciled nothing, judged nothing): its figures would lie."""


def save(results: dict[str, Any], path: Path) -> None:
    """Writes the results so far: a whole file or the previous one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(results, indent=2, default=str))
    os.replace(partial, path)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def make_models(client: Any, names: list[str]) -> None:
    for name in names:
        client.create_registered_model(name)
        for _ in range(2):
            client.create_model_version(name, source=f"s3://models/{name}")
        client.set_registered_model_alias(name, "champion", "1")


def event_to_commit(client: Any, live: Live, store: Any, traffic: Traffic, n: int) -> dict[str, Any]:
    hook = client.create_webhook(
        name="bench", url=f"{live.url}/webhooks/mlflow", events=["model_version_alias.created"], secret=SECRET
    )
    names = [f"lat-{uuid.uuid4().hex[:6]}" for _ in range(n)]
    make_models(client, names)
    time.sleep(1.5)  # the MLflow server caches its webhook list for MLFLOW_WEBHOOK_CACHE_TTL (1 s here)
    latencies = []
    for name in names:
        traffic.add_model(name)
        t0 = time.time()
        client.set_registered_model_alias(name, "challenger", "2")
        deadline = t0 + 60
        while time.time() < deadline:
            records = store.rollouts(model=name)
            commits = store.commits_of(records[0].id) if records else []
            if commits:
                latencies.append(commits[0].at - t0)
                break
            time.sleep(0.01)
    client.delete_webhook(hook.webhook_id)
    return {
        "events": n,
        "measured": len(latencies),
        "p50_s": percentile(latencies, 50),
        "p99_s": percentile(latencies, 99),
        "max_s": max(latencies) if latencies else None,
    }


async def _post_all(url: str, deliveries: list[tuple[dict[str, str], bytes]], concurrency: int) -> list[int]:
    limits = httpx.Limits(max_connections=concurrency)
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:

        async def one(headers: dict[str, str], body: bytes) -> int:
            async with sem:
                try:
                    return (await http.post(url, content=body, headers=headers)).status_code
                except httpx.HTTPError:
                    return 0

        return await asyncio.gather(*(one(h, b) for h, b in deliveries))


def _send(url: str, deliveries: list[tuple[dict[str, str], bytes]], concurrency: int) -> list[int]:
    return asyncio.run(_post_all(url, deliveries, concurrency))


def burst(live: Live, store: Any, n: int, dup_share: float = 0.2) -> dict[str, Any]:
    unique = int(n * (1 - dup_share))
    model = f"burst-{uuid.uuid4().hex[:6]}"
    originals = []
    for i in range(unique):
        body = json.dumps(
            {
                "entity": "model_version",
                "action": "created",
                "timestamp": "",
                "data": {
                    "name": model,
                    "version": str(i + 1),
                    "source": f"s3://m/{i}",
                    "run_id": None,
                    "tags": {},
                    "description": None,
                },
            }
        ).encode()
        did, ts = str(uuid.uuid4()), str(int(time.time()))
        originals.append(
            (
                {
                    "Content-Type": "application/json",
                    "X-MLflow-Delivery-Id": did,
                    "X-MLflow-Timestamp": ts,
                    "X-MLflow-Signature": sign_mlflow(SECRET, did, ts, body),
                },
                body,
            )
        )
    rng = np.random.default_rng(1)
    repeats = [originals[int(i)] for i in rng.integers(0, unique, size=n - unique)]
    deliveries = originals + repeats
    order = rng.permutation(len(deliveries))
    deliveries = [deliveries[int(i)] for i in order]
    before = len(store.inbox())
    t0 = time.perf_counter()
    # The sender runs in its own process, so it does not share the controller's interpreter.
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        statuses = pool.submit(_send, f"{live.url}/webhooks/mlflow", deliveries, 64).result()
    sent_s = time.perf_counter() - t0
    while store.pending_inbox(limit=1):
        time.sleep(0.01)
    drained_s = time.perf_counter() - t0
    stored = [i for i in store.inbox()[before:] if i.event.get("model") == model]
    return {
        "deliveries": n,
        "unique": unique,
        "accepted_202": statuses.count(202),
        "duplicate_200": statuses.count(200),
        "errors": sum(1 for s in statuses if s not in (200, 202)),
        "stored": len(stored),
        "stored_distinct_ids": len({i.delivery_id for i in stored}),
        "processed": sum(1 for i in stored if i.processed_at),
        "send_s": sent_s,
        "drain_s": drained_s,
        "deliveries_per_s": n / sent_s,
    }


def many_rollouts(
    client: Any, live: Live, service: Any, traffic: Traffic, r: int, ticks: int
) -> dict[str, Any]:
    names = [f"many-{i}-{uuid.uuid4().hex[:4]}" for i in range(r)]
    t_models = time.perf_counter()
    make_models(client, names)
    models_s = time.perf_counter() - t_models
    for name in names:
        traffic.add_model(name)
    service.stop_loop()  # tick by hand from here, to time each pass
    store, reconciler = service.store, service.reconciler
    for name in names:  # as the webhook handler stores them (the HTTP path is measured by the burst)
        did = str(uuid.uuid4())
        store.accept_delivery(
            "mlflow",
            did,
            "registry",
            {
                "source": "mlflow",
                "delivery_id": did,
                "change": "alias_set",
                "model": name,
                "version": "2",
                "alias": "challenger",
            },
        )
    timings, counts = [], []
    for _ in range(1 + ticks):
        t0 = time.perf_counter()
        counts.append(reconciler.tick())
        timings.append(time.perf_counter() - t0)
    active = [x for x in store.rollouts(active_only=True) if x.model in set(names)]
    analysing = [x for x in active if x.phase == "canary" and x.step_index == 0]
    if not all(counts[1:]) or not analysing:
        raise PhaseFailed(f"many rollouts: reconciled per tick {counts}, {len(analysing)} in analysis")
    steady = [t / c for t, c in zip(timings[1:], counts[1:], strict=True)]
    return {
        "rollouts": r,
        "reconciled_per_tick": counts,
        "registry_setup_s": models_s,
        "start_tick_s": timings[0],
        "start_per_new_rollout_ms": timings[0] / r * 1000,
        "steady_tick_p50_s": percentile(timings[1:], 50),
        "steady_per_rollout_ms": percentile(steady, 50) * 1000,
        "in_analysis": len(analysing),
        "waiting_reasons": sorted({x.waiting_reason or "" for x in analysing})[:3],
    }


CADENCE_POLICY = """name: cadence
traffic_mode: configmap
steps:
  - {weight: 10, min_duration_s: 86400, min_samples: 50, warmup_s: 0}
  - {weight: 50, min_duration_s: 86400, min_samples: 50, warmup_s: 0}
max_duration_s: 172800
evaluate_every_s: 5
min_baseline_samples: 50
sample_ratio: {enabled: false}
"""


def prometheus_queries(url: str) -> dict[str, float]:
    """Queries Prometheus has answered so far, by API handler (its own `prometheus_http_requests_total`):
    counted at the server, so every reader in the controller is counted, whichever it is; and the CPU
    seconds Prometheus has used (`cpu`)."""
    counts = {"/api/v1/query": 0.0, "/api/v1/query_range": 0.0, "cpu": 0.0}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("process_cpu_seconds_total "):
            counts["cpu"] = float(line.split()[1])
        if line.startswith("prometheus_http_requests_total{"):
            labels, value = line[line.index("{") + 1 : line.index("}")], line.rsplit(" ", 1)[1]
            handler = dict(part.split("=", 1) for part in labels.split(",")).get("handler", "").strip('"')
            if handler in counts:
                counts[handler] += float(value)
    return counts


def cadence(
    client: Any,
    live: Live,
    service: Any,
    traffic: Traffic,
    names: list[str],
    seconds: float,
    events: int,
    prometheus_url: str,
) -> dict[str, Any]:
    """`names` (their trigger is CADENCE_POLICY: looks every 5 s, no warm-up, never deciding) all in
    analysis with the loop running; then, for `seconds`, how late each look is judged, the event ->
    first commit latency of `events` new rollouts meanwhile, and how many queries Prometheus
    answered (per 5-s look interval: the reader's tick; per look judged)."""
    hook = client.create_webhook(
        name="cadence",
        url=f"{live.url}/webhooks/mlflow",
        events=["model_version_alias.created"],
        secret=SECRET,
    )
    began = time.time()
    make_models(client, names)
    made = time.time()
    time.sleep(1.5)  # the MLflow server caches its webhook list for MLFLOW_WEBHOOK_CACHE_TTL (1 s here)
    for name in names:
        traffic.add_model(name)
        client.set_registered_model_alias(name, "challenger", "2")  # MLflow delivers the webhook
    analyses = service.reconciler.engine._run_step.context.analyses  # the local runner's step context
    t0 = time.time()
    while len(analyses) < len(names) and time.time() - t0 < 600:
        time.sleep(1.0)
    reached, in_analysis = len(analyses), time.time()
    client.delete_webhook(hook.webhook_id)  # the latency events below come through their own
    if reached == 0:
        raise PhaseFailed("cadence: no rollout reached its analysis within 10 minutes")
    time.sleep(10.0)  # every step has read its history once: from here on, a look at a time
    metrics = service.reconciler.engine._run_step.context.metrics
    reader = _reader_pid(metrics)  # the batched reads' process, where they have one
    start, queries_before, cpu_before = time.time(), prometheus_queries(prometheus_url), time.process_time()
    reader_before = cpu_s(reader) if reader else 0.0
    latency = event_to_commit(client, live, service.store, traffic, events) if events else None
    time.sleep(max(0.0, seconds - (time.time() - start)))
    late = analyses.lateness(since=start, models=frozenset(names))  # the cadence rollouts' looks only
    took = time.time() - start
    queries_after, cpu = prometheus_queries(prometheus_url), time.process_time() - cpu_before
    reader_cpu = cpu_s(reader) - reader_before if reader else 0.0
    instant, ranged, prometheus_cpu = (
        queries_after[h] - queries_before[h] for h in ("/api/v1/query", "/api/v1/query_range", "cpu")
    )
    if not late:
        raise PhaseFailed(f"cadence: no look judged in {took:.0f} s with {reached} rollouts in analysis")
    service.stop_loop()  # the later phases time on their own, without these rollouts' ticks
    due = reached * took / 5.0
    return {
        "rollouts": len(names),
        "in_analysis": reached,
        # bringing them in: the registered models and versions made through MLflow's API, then one
        # alias each (a webhook each) until the last step reached its analysis
        "seconds_making_models": made - began,
        "seconds_to_analysis": in_analysis - made,
        "seconds": took,
        "looks_judged": len(late),
        "looks_due": due,
        "lateness_p50_s": percentile(late, 50),
        "lateness_p99_s": percentile(late, 99),
        "lateness_max_s": max(late),
        "event_to_first_commit": latency,
        "batched_reads": type(metrics).__name__ == "BatchedSource",
        "read_process": reader is not None,
        "prometheus_instant_queries": int(instant),
        "prometheus_range_queries": int(ranged),
        "queries_per_5s_tick": (instant + ranged) / (took / 5.0),
        "queries_per_look_judged": (instant + ranged) / len(late),
        # CPU per look judged: this process (the controller and its reader; the traffic generator has
        # a process of its own) and Prometheus, which shares the machine
        "process_cpu_ms_per_look": cpu * 1000 / len(late),
        # the batched reads' process (CANARYFLOW_METRICS_READ_PROCESS=true), part of the controller
        "read_process_cpu_ms_per_look": reader_cpu * 1000 / len(late),
        "prometheus_cpu_ms_per_look": prometheus_cpu * 1000 / len(late),
        "load_average": os.getloadavg(),
    }


def _reader_pid(metrics: Any) -> int | None:
    """The pid of the batched reads' process, where the controller reads through one."""
    process = getattr(getattr(metrics, "_chunk_reader", None), "_process", None)
    return process.pid if process is not None else None


def cpu_s(pid: int) -> float:
    """A process' CPU seconds so far (user + system), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _synthetic_looks(count: int, every_s: float = 5.0, rate: float = 50.0) -> list[Any]:
    """Readings of two identical arms (10% canary) every `every_s`, cumulative, as Prometheus gives them."""
    from canaryflow.kernel.analysis import ArmObservations, Histogram, Observations

    rng = np.random.default_rng(2)
    draws = np.sort(rng.lognormal(np.log(0.02), 0.35, size=100_000))
    edges = np.searchsorted(draws, BUCKETS_S, side="right")
    p = np.diff(np.concatenate([[0], edges, [len(draws)]])) / len(draws)
    totals = {"b": np.zeros(len(p), dtype=np.int64), "c": np.zeros(len(p), dtype=np.int64)}
    looks = []
    for k in range(1, count + 1):
        for arm, share in (("b", 0.9), ("c", 0.1)):
            totals[arm] += rng.multinomial(int(rng.poisson(rate * every_s * share)), p)

        def obs(arm: str) -> Any:
            c = np.cumsum(totals[arm])
            hist = Histogram(bounds=BUCKETS_S, counts=c[:-1].tolist(), total=int(c[-1]))
            return ArmObservations(requests=int(c[-1]), errors=0, latency_s=hist)

        looks.append(Observations(elapsed_s=k * every_s, baseline=obs("b"), canary=obs("c")))
    return looks


def look_cost(minutes: tuple[int, ...] = (1, 5, 10, 20, 30)) -> dict[str, Any]:
    """The judge's CPU time per new look during each minute of a step (the live path: the state kept,
    each new look appended and judged; median and slowest of the minute's 12) beside judging every
    look since the step began again (what each call did before)."""
    from canaryflow.kernel.analysis import analyze_looks
    from canaryflow.kernel.analysis.incremental import StepAnalysis, advance
    from policies import load_policy

    base = load_policy("default")
    steps = [st.model_copy(update={"min_duration_s": 86_400}) for st in base.steps]
    policy = base.model_copy(update={"steps": steps, "max_duration_s": 172_800.0})
    looks = _synthetic_looks(max(minutes) * 12)
    rows = []
    for minute in minutes:
        k = minute * 12  # the looks of this minute are k - 11 … k (1-based)
        state = advance(policy, StepAnalysis(), looks[: k - 12])
        per_look = []
        for i in range(k - 12, k):  # each of the minute's looks as the live step judges it
            t0 = time.thread_time()  # this thread's CPU: the controller's threads may still run
            state = advance(policy, state, looks[i : i + 1])
            per_look.append(time.thread_time() - t0)
        if state.result is None or state.judged != k:
            raise PhaseFailed(f"look cost: the looks of minute {minute} were not judged")
        t0 = time.thread_time()
        analyze_looks(policy, looks[:k])
        full = time.thread_time() - t0
        rows.append({"minute": minute, "looks": k, "incremental_ms": percentile(per_look, 50) * 1000,
                     "incremental_max_ms": max(per_look) * 1000, "full_ms": full * 1000})  # fmt: skip
    return {"policy": "default", "rows": rows}


def _idle_loop(settings: Any, step: Any, policy_file: Path, prefix: str, r: int) -> Any:
    """The reconciler of `r` new rollouts (`<prefix><i>`) in the SQLite file of `settings`, its local
    runner running `step` under the policy in `policy_file`."""
    from controller.observability import ControllerMetrics
    from controller.reconcile import Reconciler
    from controller.rollout.store import RolloutStore
    from policies import load_policy
    from workflows.local.runner import LocalRunner

    policy = load_policy(str(policy_file))
    store = RolloutStore(settings.db_path)
    runner = LocalRunner(settings.db_path, step, lambda name: policy)
    seed_rollouts(store, prefix, r)
    return Reconciler(settings, store, runner, None, ControllerMetrics(store), policy_loader=lambda n: policy)


def loop_overhead(tmp: Path, r: int, ticks: int) -> dict[str, Any]:
    """The loop's own cost per rollout: the real store, runner and mirror, with steps that do nothing
    (every analysis answers "not yet"), so git, the registry and Prometheus are left out."""
    import cProfile
    import pstats

    from pydantic import SecretStr

    from controller.controller_settings import ControllerSettings

    (tmp / "overhead").mkdir()
    settings = ControllerSettings(
        db_path=tmp / "overhead" / "c.db",
        mlflow_webhook_secret=SecretStr("x"),
        reconcile_workers=0,  # on this thread, where the profile sees it
    )
    reconciler = _idle_loop(settings, idle_step, tmp / "policy.yaml", "m", r)
    reconciler.tick()
    profile = cProfile.Profile()
    timings = []
    for _ in range(ticks):
        t0 = time.perf_counter()
        profile.enable()
        reconciled = reconciler.tick()
        profile.disable()
        if reconciled != r:
            raise PhaseFailed(f"loop overhead: a tick reconciled {reconciled} of {r} rollouts")
        timings.append((time.perf_counter() - t0) / r)
    stats = pstats.Stats(profile)
    engine_s = sum(v[3] for k, v in stats.stats.items() if k[2] == "reconcile" and "runner" in k[0])  # type: ignore[attr-defined]
    total_s = sum(timings) * r
    # What the controller does per rollout when the engine is Argo (analysis in pods): mirror the
    # workflow's status into the store (`workflow_mirror.mirror` and `_record_mirror`) and drive it.
    mirror_s = sum(
        v[3] for k, v in stats.stats.items()  # type: ignore[attr-defined]
        if (k[2] == "_record_mirror" and k[0].endswith("reconcile.py"))
        or (k[2] == "mirror" and k[0].endswith("workflow_mirror.py"))
    )  # fmt: skip
    return {
        "rollouts": r,
        "per_rollout_ms": percentile(timings, 50) * 1000,
        "engine_share": engine_s / total_s if total_s else None,
        "controller_per_rollout_ms": (total_s - engine_s) / r / ticks * 1000,
        "mirror_per_rollout_ms": mirror_s / r / ticks * 1000,
    }


def judged_loop(tmp: Path, r: int, ticks: int, kept_looks: int = 60) -> dict[str, Any]:
    """A look all in but the Prometheus reads: the loop (store, local runner, mirror) with the real
    analysis step, its cache and the judge, fed by a source that hands each rollout one new synthetic
    look per call (after `kept_looks` at its first: a step five minutes old). CPU per rollout per
    tick, and the judge's part of it (`incremental.advance`)."""
    from typing import cast

    from pydantic import SecretStr

    import workflows.steps.analysis as analysis_step
    from controller.controller_settings import ControllerSettings
    from workflows.steps import STEPS
    from workflows.steps.base import StepOutcome
    from workflows.steps.context import StepContext

    looks = _synthetic_looks(kept_looks + ticks + 8)

    class Source:  # the MetricsSource calls the analysis step makes
        def observe_looks(self, *args: Any, from_look: int = 1, **kw: Any) -> list[Any]:
            return looks[from_look - 1 : from_look + (kept_looks if from_look == 1 else 0)]

        def scraped(self, *args: Any) -> bool:
            return True

    none = cast(Any, None)
    # As the controller's local runner builds it: promote-now arrives directly, no registry read.
    ctx = StepContext(none, none, cast(Any, Source()), none, none, none, directives=False)
    judged_s = [0.0]
    advance = analysis_step.advance

    def timed_advance(policy: Any, state: Any, new_looks: Any) -> Any:
        t0 = time.thread_time()
        try:
            return advance(policy, state, new_looks)
        finally:
            judged_s[0] += time.thread_time() - t0

    def step(node: Any, step_input: Any) -> StepOutcome:
        if node.step in ("analyze", "bake"):
            return STEPS[node.step](ctx, step_input)
        return StepOutcome(state="succeeded", outputs={o: "0" * 40 for o in node.outputs})

    (tmp / "judged").mkdir()
    settings = ControllerSettings(
        db_path=tmp / "judged" / "c.db", mlflow_webhook_secret=SecretStr("x"), reconcile_workers=0
    )
    reconciler = _idle_loop(settings, step, tmp / "cadence.yaml", "j", r)
    for _ in range(2):  # start every workflow and run it up to its analysis
        reconciler.tick()
    # Each step's window opens on the look grid once its warm-up is over (up to a look interval
    # after it starts): tick until every rollout has judged its kept looks.
    deadline = time.monotonic() + 60
    while len(ctx.analyses.lateness()) < r * kept_looks:
        if time.monotonic() > deadline:
            raise PhaseFailed(f"judged loop: {len(ctx.analyses.lateness())} kept looks judged in 60 s")
        time.sleep(0.5)
        reconciler.tick()
    before = len(ctx.analyses.lateness())
    analysis_step.advance = timed_advance
    try:
        cpu, wall = [], []
        for _ in range(ticks):
            t0, c0 = time.perf_counter(), time.thread_time()
            reconciled = reconciler.tick()
            cpu.append((time.thread_time() - c0) / r)
            wall.append((time.perf_counter() - t0) / r)
            if reconciled != r:
                raise PhaseFailed(f"judged loop: a tick reconciled {reconciled} of {r} rollouts")
    finally:
        analysis_step.advance = advance
    judged = len(ctx.analyses.lateness()) - before
    if judged != r * ticks:
        raise PhaseFailed(f"judged loop: {judged} looks judged, {r * ticks} due")
    return {
        "rollouts": r,
        "ticks": ticks,
        "looks_judged": judged,
        "step_age_looks": kept_looks,
        "cpu_per_rollout_ms": percentile(cpu, 50) * 1000,
        "wall_per_rollout_ms": percentile(wall, 50) * 1000,
        "judge_per_look_ms": judged_s[0] / judged * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a few minutes on 2 cores)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "controller.json")
    parser.add_argument(
        "--phases",
        default="latency,burst,cadence,rollouts,looks,overhead,judged",
        help="which of latency,burst,cadence,rollouts,looks,overhead,judged",
    )
    parser.add_argument("--cadence-rollouts", type=int, default=None, help="rollouts in analysis at once")
    parser.add_argument("--cadence-seconds", type=float, default=120.0)
    parser.add_argument("--cadence-events", type=int, default=None, help="events timed meanwhile (30)")
    args = parser.parse_args(argv)
    phases = set(args.phases.split(","))
    n_events, n_burst, n_rollouts, n_ticks = (10, 1000, 50, 3) if args.quick else (30, 1000, 200, 5)
    n_cadence = args.cadence_rollouts or (20 if args.quick else 1000)
    cadence_names = [f"cad-{i}-{uuid.uuid4().hex[:4]}" for i in range(n_cadence)]

    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory(prefix="cf-bench-") as tmp_name:
        tmp = Path(tmp_name)
        traffic = Traffic()
        mlflow = start_mlflow(tmp / "mlflow")
        prometheus = start_prometheus(tmp / "prometheus", [traffic.target], interval_s=2.0)
        remote = init_bare_remote(tmp / "gitops.git")
        (tmp / "policy.yaml").write_text(POLICY)
        (tmp / "cadence.yaml").write_text(CADENCE_POLICY)
        os.environ.update(
            {
                "CANARYFLOW_GITOPS_REMOTE_URL": str(remote),
                "CANARYFLOW_GITOPS_WORKDIR": str(tmp / "work"),
                "CANARYFLOW_WORKFLOWS_ENGINE": "local",
                "CANARYFLOW_METRICS_BACKEND": "prometheus",
                "CANARYFLOW_METRICS_PROMETHEUS_URL": prometheus.url,
            }
        )
        from pydantic import SecretStr

        from canaryflow.app.wiring import build_service
        from controller.controller_settings import ControllerSettings, TriggerRule

        settings = ControllerSettings(
            db_path=tmp / "controller.db",
            mlflow_webhook_secret=SecretStr(SECRET),
            registry_tracking_uri=mlflow.tracking_uri,
            reconcile_interval_s=0.5,
            triggers={
                "*": [TriggerRule(kind="alias", policy=str(tmp / "policy.yaml"))],
                **{n: [TriggerRule(kind="alias", policy=str(tmp / "cadence.yaml"))] for n in cadence_names},
            },
        )
        service = build_service(settings)
        live = Live(service)
        live.start()
        service.start_loop()
        client = MlflowClient(mlflow.tracking_uri)
        results: dict[str, Any] = {"quick": args.quick, "cpus": os.cpu_count(), "started": time.time()}
        store, quick_events = service.store, args.cadence_events or (10 if args.quick else 30)
        runs = {
            "latency": ("event_to_first_commit", lambda: event_to_commit(
                client, live, store, traffic, n_events)),
            "burst": ("burst", lambda: burst(live, store, n_burst)),
            "cadence": ("cadence", lambda: cadence(
                client, live, service, traffic, cadence_names, args.cadence_seconds, quick_events,
                prometheus.url)),
            "rollouts": ("many_rollouts", lambda: many_rollouts(
                client, live, service, traffic, n_rollouts, n_ticks)),
            "looks": ("look_cost", look_cost),
            "overhead": ("loop_overhead", lambda: loop_overhead(tmp, n_rollouts, n_ticks)),
            "judged": ("judged_loop", lambda: judged_loop(tmp, n_rollouts, n_ticks)),
        }  # fmt: skip
        failed = False
        try:
            for phase in ("latency", "burst", "cadence", "rollouts", "looks", "overhead", "judged"):
                if phase not in phases:
                    continue
                key, run = runs[phase]
                try:
                    results[key] = run()
                except PhaseFailed as exc:
                    results[key] = {"failed": str(exc)}
                    failed = True
                save(results, args.out)  # a run that dies later keeps this phase's figures
        finally:
            live.stop()
            prometheus.stop()
            mlflow.stop()
            traffic.stop()
    save(results, args.out)
    for name, value, note in table_rows(results):
        print(f"{name:<38}  {value:<24}  {note}")
    print(f"wrote {args.out}")
    return 1 if failed else 0


def table_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    if (e := results.get("event_to_first_commit")) is not None and "failed" not in e:
        rows.append(
            (
                "event -> first commit p50 / p99",
                f"{e['p50_s'] * 1000:.0f} ms / {e['p99_s'] * 1000:.0f} ms",
                f"{e['measured']}/{e['events']} events",
            )
        )
    if (b := results.get("burst")) is not None and "failed" not in b:
        rows += [
            (
                "burst: accepted / duplicate / errors",
                f"{b['accepted_202']} / {b['duplicate_200']} / {b['errors']}",
                f"{b['deliveries']} deliveries, {b['unique']} unique ids",
            ),
            (
                "burst: stored / processed",
                f"{b['stored']} / {b['processed']}",
                f"distinct ids {b['stored_distinct_ids']}",
            ),
            (
                "burst: send / drain",
                f"{b['send_s']:.2f} s / {b['drain_s']:.2f} s",
                f"{b['deliveries_per_s']:.0f} deliveries/s",
            ),
        ]
    if (m := results.get("many_rollouts")) is not None and "failed" not in m:
        rows += [
            (
                "rollouts: start + first commit",
                f"{m['start_per_new_rollout_ms']:.0f} ms/rollout",
                f"{m['rollouts']} new rollouts, one tick of {m['start_tick_s']:.1f} s",
            ),
            (
                "rollouts: analysis tick",
                f"{m['steady_per_rollout_ms']:.1f} ms/rollout",
                f"tick p50 {m['steady_tick_p50_s']:.2f} s, {m['in_analysis']} in analysis",
            ),
        ]
    for key, value in results.items():
        if isinstance(value, dict) and "failed" in value:
            rows.append((f"{key}: FAILED", "", value["failed"]))
    if (c := results.get("cadence")) is not None and "failed" not in c:
        rows.append(
            (
                "cadence: look lateness p50 / p99",
                f"{c['lateness_p50_s']:.2f} s / {c['lateness_p99_s']:.2f} s",
                f"{c['in_analysis']}/{c['rollouts']} in analysis, {c['looks_judged']} of "
                f"{c['looks_due']:.0f} looks due judged in {c['seconds']:.0f} s",
            )
        )
        rows.append(
            (
                "cadence: Prometheus queries",
                f"{c['queries_per_5s_tick']:.0f} per 5 s tick",
                f"{c['prometheus_range_queries']} range + {c['prometheus_instant_queries']} instant, "
                f"{c['queries_per_look_judged']:.2f} per look judged, "
                f"{'batched' if c['batched_reads'] else 'per-rollout'} reads",
            )
        )
        rows.append(
            (
                "cadence: CPU per look judged",
                f"{c['process_cpu_ms_per_look']:.0f} ms + {c['read_process_cpu_ms_per_look']:.0f} ms"
                f" + {c['prometheus_cpu_ms_per_look']:.0f} ms",
                "the controller's process + its read process (if any) + Prometheus",
            )
        )
        if (e := c.get("event_to_first_commit")) is not None:
            rows.append(
                (
                    "cadence: event -> first commit p50 / p99",
                    f"{e['p50_s'] * 1000:.0f} ms / {e['p99_s'] * 1000:.0f} ms",
                    f"{e['measured']}/{e['events']} events, meanwhile",
                )
            )
    if (lc := results.get("look_cost")) is not None and "failed" not in lc:
        for row in lc["rows"]:
            rows.append(
                (
                    f"look cost at minute {row['minute']}",
                    f"{row['incremental_ms']:.1f} ms (slowest {row['incremental_max_ms']:.0f} ms)",
                    f"judging all {row['looks']} looks again: {row['full_ms']:.0f} ms",
                )
            )
    if (o := results.get("loop_overhead")) is not None and "failed" not in o:
        rows.append(
            (
                "loop overhead (no git/registry/metrics)",
                f"{o['per_rollout_ms']:.1f} ms/rollout",
                f"{o['rollouts']} rollouts; local runner {o['engine_share']:.0%} of it",
            )
        )
        rows.append(
            (
                "Argo mode: controller's work per tick",
                f"{o['controller_per_rollout_ms']:.2f} ms/rollout",
                f"of it mirroring status {o['mirror_per_rollout_ms']:.2f} ms (profiled, no engine call)",
            )
        )
    if (j := results.get("judged_loop")) is not None and "failed" not in j:
        rows.append(
            (
                "a look all in but the reads",
                f"{j['cpu_per_rollout_ms']:.1f} ms CPU/rollout",
                f"{j['rollouts']} rollouts, one new look each per tick; the judge "
                f"{j['judge_per_look_ms']:.1f} ms of it",
            )
        )
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
