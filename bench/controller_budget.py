"""What the parts that are not the controller cost at N rollouts' worth of series, on this machine.

    nice -n 10 .venv/bin/python bench/controller_budget.py --rollouts 1000 --seconds 90

The cadence phase of `bench/controller.py` with the controller taken out: the same traffic generator
process (`bench.controller.Traffic`, two versions per model, the inference servers' metric contract),
the same Prometheus (Debian package, 2-s scrapes), and the controller's batched reads
(`canaryflow.adapters.metrics.batched.BatchedSource`, its reader thread as the controller runs it) for
N rollouts whose steps look every 5 s, each step asking for its new looks every second as a reconcile
tick would, and nothing judged. It needs neither MLflow nor git, so N rollouts are in "analysis" at
once from the start (the cadence phase brings them in one webhook at a time).

Over a window of `--seconds`, it reads each process' CPU time from /proc/<pid>/stat (utime + stime:
the traffic generator, Prometheus, this process: the reads as the controller would pay for them),
the machine's busy cores from /proc/stat (everyone's work), and the load average; and checks that
the window measured what it says: Prometheus scraped every series, the reads answered the looks due
(a window that read no look fails: exit 1; fewer looks than due is a figure). `--reads batched`:
the batched reads on the reader's threads, in this process (as the controller's interpreter runs
them with CANARYFLOW_METRICS_READ_PROCESS=false); `--reads process`: through a reader process
(`read_process.py`, the default); `--reads none` leaves the reads out (scraping only).

From these: 200 looks/s are due at 1,000 rollouts; the cores left for the controller (2, less the
generator and Prometheus) divided by the looks due per second is the CPU a look may cost it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.controller import PhaseFailed, Traffic, cpu_s, percentile, prometheus_queries, save  # noqa: E402
from canaryflow.adapters.metrics.batched import BatchedSource, _alternation  # noqa: E402
from canaryflow.adapters.metrics.prometheus import FAMILIES, PrometheusSource  # noqa: E402
from canaryflow.app.local.prometheus import start_prometheus  # noqa: E402
from canaryflow.kernel.contracts.looks import on_look_grid  # noqa: E402

EVERY_S = 5.0  # the cadence policy's evaluate_every_s (bench/controller.py CADENCE_POLICY)
TICK_S = 1.0  # how often each step asks for its new looks
TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> tuple[float, float]:
    """The machine's (busy, total) CPU seconds so far over all cores, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / TICKS, sum(values[:8]) / TICKS


def instant(url: str, promql: str) -> float:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=30).json()
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


class Steps:
    """N steps asking for their new looks every TICK_S, as the local runner's analysis steps do on
    each reconcile (`observe_looks(from_look=…)`), nothing judged: counts the looks taken and how
    late each was taken (taken at − the look's time)."""

    def __init__(self, source: Any, names: list[str], since: float) -> None:
        self.source, self.names, self.since = source, names, since
        self.taken = dict.fromkeys(names, 0)
        self.lateness: list[float] = []
        self.errors = 0
        self.last_error = ""
        self.cpu_s = 0.0
        self.counting_from = float("inf")  # lateness is kept for the looks at [counting_from, counting_to)
        self.counting_to = float("inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            began, cpu = time.monotonic(), time.thread_time()
            for name in self.names:
                try:
                    looks = self.source.observe_looks(
                        name, "1", "2", self.since, EVERY_S, from_look=self.taken[name] + 1
                    )
                except Exception as exc:  # the reads failed: the step waits (counted, the last kept)
                    self.errors, self.last_error = self.errors + 1, str(exc)[-300:]
                    continue
                now = time.time()
                for k in range(self.taken[name] + 1, self.taken[name] + 1 + len(looks)):
                    at = self.since + k * EVERY_S
                    if self.counting_from <= at < self.counting_to:
                        self.lateness.append(now - at)
                self.taken[name] += len(looks)
            self.cpu_s += time.thread_time() - cpu
            self._stop.wait(max(0.0, TICK_S - (time.monotonic() - began)))


def bucket_query(url: str, names: list[str], pid: int) -> dict[str, float]:
    """The batched reads' costliest query, asked once by itself after the window: the latency
    buckets of every version, as `batched.query_chunk` asks them, over the last two looks: its wall
    time, Prometheus' CPU for it, the answer's size, and parsing it with orjson (with the cyclic
    garbage collector on, as on the controller's threads, and off, as in the reader process)."""
    family = FAMILIES[0]
    promql = family.promql(f'model=~"{_alternation(sorted(names))}",version=~"1|2"', ("model", "version"))
    last = (round((time.time() - 1.0) * 1000) // 5000) * 5000
    cpu, began = cpu_s(pid), time.perf_counter()
    answer = httpx.post(
        f"{url}/api/v1/query_range",
        data={
            "query": promql,
            "start": f"{(last - 5000) / 1000:.3f}",
            "end": f"{last / 1000:.3f}",
            "step": "5",
        },
        timeout=120,
    )
    wall, cpu = time.perf_counter() - began, cpu_s(pid) - cpu
    parse = []
    for collecting in (True, False):
        if not collecting:
            gc.disable()
        began = time.perf_counter()
        series = len(orjson.loads(answer.content)["data"]["result"])
        parse.append(time.perf_counter() - began)
        gc.enable()
    return {
        "wall_s": wall,
        "prometheus_cpu_s": cpu,
        "answer_mb": len(answer.content) / 1e6,
        "series": series,
        "orjson_parse_s_gc_on": parse[0],
        "orjson_parse_s_gc_off": parse[1],
    }


def source_for(reads: str, url: str) -> Any:
    if reads == "process":
        from canaryflow.adapters.metrics.read_process import ProcessReads

        return BatchedSource(PrometheusSource(url), chunk_reader=ProcessReads(url))
    return BatchedSource(PrometheusSource(url))


def budget(rollouts: int, seconds: float, reads: str, tmp: Path) -> dict[str, Any]:
    names = [f"cad-{i}-{uuid.uuid4().hex[:4]}" for i in range(rollouts)]  # as the cadence phase names them
    traffic = Traffic()
    prometheus = start_prometheus(tmp / "prometheus", [traffic.target], interval_s=2.0)
    source = None
    steps = None
    try:
        for name in names:
            traffic.add_model(name)
        since = on_look_grid(time.time() + 1.0, EVERY_S)  # every step's window starts here
        series = 2 * rollouts
        deadline = time.time() + 120
        while instant(prometheus.url, "count(canaryflow_requests_total)") < series:
            if time.time() > deadline:
                raise PhaseFailed(f"Prometheus did not scrape the {series} versions' series within 2 minutes")
            time.sleep(2.0)
        time.sleep(max(0.0, since + 2 * EVERY_S - time.time()))  # a few looks of history
        if reads != "none":
            source = source_for(reads, prometheus.url)
            steps = Steps(source, names, since)
            steps.start()
            time.sleep(3 * EVERY_S)  # every step has read its history: from here on, a look at a time
            steps.counting_from = time.time()
        assert traffic._process.pid is not None
        pids = {"traffic_generator": traffic._process.pid, "prometheus": prometheus.process.proc.pid}
        pids["reads (this process)"] = os.getpid()
        reader = getattr(getattr(source, "_chunk_reader", None), "_process", None)
        if reader is not None:  # --reads process: the reader process, started on the first read
            pids["reads (their process)"] = reader.pid
        load_before, busy_before = os.getloadavg(), machine_busy_s()
        cpu_before = {k: cpu_s(p) for k, p in pids.items()}
        queries_before, steps_cpu_before = prometheus_queries(prometheus.url), steps.cpu_s if steps else 0.0
        start = time.monotonic()
        time.sleep(seconds)
        took = time.monotonic() - start
        cpu_after = {k: cpu_s(p) for k, p in pids.items()}
        busy_after, load_after = machine_busy_s(), os.getloadavg()
        queries_after = prometheus_queries(prometheus.url)
        if steps is not None:
            steps.counting_to = time.time()  # the looks due in the window: those before now
            time.sleep(EVERY_S)  # the window's last looks taken (their CPU is not counted)
        window = f"[{int(took)}s]"
        scrape_s = instant(prometheus.url, f"avg_over_time(scrape_duration_seconds{window})")
        scrape_max_s = instant(prometheus.url, f"max_over_time(scrape_duration_seconds{window})")
        samples = instant(prometheus.url, f"max_over_time(scrape_samples_scraped{window})")
        up = instant(prometheus.url, f"avg_over_time(up{window})")  # the share of scrapes that succeeded
        cores = {k: (cpu_after[k] - cpu_before[k]) / took for k in pids}
        if steps is not None:
            steps.stop()  # the looks are counted; with the reads stopped, the probe is alone
        if source is not None:
            source.close()
        probe = bucket_query(prometheus.url, names, prometheus.process.proc.pid)
        if steps is None:
            del cores["reads (this process)"]
        else:
            steps_cores = (steps.cpu_s - steps_cpu_before) / took
            cores["reads (this process)"] -= steps_cores
            cores["steps asking for their looks (this process)"] = steps_cores
        ranged = queries_after["/api/v1/query_range"] - queries_before["/api/v1/query_range"]
        result: dict[str, Any] = {
            "rollouts": rollouts,
            "versions": series,
            "reads": reads,
            "seconds": took,
            "cores_used": cores,
            "machine_busy_cores": (os.cpu_count() or 1)
            * (busy_after[0] - busy_before[0])
            / (busy_after[1] - busy_before[1]),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "scrape": {
                "duration_avg_s": scrape_s,
                "duration_max_s": scrape_max_s,
                "samples": samples,
                "up_share": up,
            },
            "prometheus_range_queries_per_5s": ranged / (took / EVERY_S),
            "bucket_query_alone": probe,
        }
        # scrapes past the 2-s timeout (a loaded machine) are a figure (up_share), not a failure;
        # half of them failing is: Prometheus' CPU would not be what scraping every series costs
        if up < 0.5 or samples < series * 100:
            raise PhaseFailed(f"the scrapes failed or fell short in the window: {json.dumps(result)}")
        if steps is not None:
            late = list(steps.lateness)
            grid = [since + k * EVERY_S for k in range(int((steps.counting_to - since) / EVERY_S) + 2)]
            due = rollouts * sum(steps.counting_from <= at < steps.counting_to for at in grid)
            result.update(
                looks_due=due,
                looks_taken=len(late),
                lateness_p50_s=percentile(late, 50) if late else None,
                lateness_p99_s=percentile(late, 99) if late else None,
                step_errors=steps.errors,
                last_step_error=steps.last_error,
                reads_cpu_ms_per_look=cores["reads (this process)"] * took * 1000 / max(len(late), 1),
            )
            if not late:  # read nothing: the window measured nothing (fewer than due is a figure)
                raise PhaseFailed(f"the reads answered no look of {due:.0f} due: {json.dumps(result)}")
        looks_per_s = rollouts / EVERY_S
        # a failed scrape ingests nothing: Prometheus' cost had every scrape succeeded, at most
        cores["prometheus, every scrape (measured / up_share)"] = cores["prometheus"] / up
        result["budget"] = {"looks_due_per_s": looks_per_s}
        for name, prometheus_cores in (
            ("as measured", cores["prometheus"]),
            ("every scrape", cores["prometheus, every scrape (measured / up_share)"]),
        ):
            left = (os.cpu_count() or 1) - cores["traffic_generator"] - prometheus_cores
            result["budget"][name] = {
                "cores_left_for_the_controller": left,
                "controller_cpu_ms_per_look_allowed": left / looks_per_s * 1000,
            }
        return result
    finally:
        if steps is not None:
            steps.stop()
        if source is not None:
            source.close()
        prometheus.stop()
        traffic.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--reads", choices=("batched", "process", "none"), default="batched")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "controller-budget.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cf-budget-") as tmp:
        try:
            result = budget(args.rollouts, args.seconds, args.reads, Path(tmp))
            failed = False
        except PhaseFailed as exc:
            result, failed = {"failed": str(exc)}, True
    save(result, args.out)
    print(json.dumps(result, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
