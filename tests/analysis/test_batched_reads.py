"""Batched reads (`canaryflow.adapters.metrics.batched`) against a real Prometheus.

Several rollouts' metrics, under model names full of regex and PromQL metacharacters, are served by
a real prometheus_client exporter and scraped by a real Prometheus. The batched source must give
every step exactly the looks the per-rollout `PrometheusSource` gives it, with one range query per
metric family per look for all of them (counted by Prometheus itself), in chunks when the selector
would be long; and a slow or failing query (a small proxy in front of the real server holds or
refuses the queries of one model) must hold back only the steps it feeds, never the caller.
"""

from __future__ import annotations

import math
import random
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from canaryflow.adapters.metrics import MetricsError
from canaryflow.adapters.metrics.batched import BatchedSource
from canaryflow.adapters.metrics.prometheus import FAMILIES, PrometheusSource
from canaryflow.adapters.metrics.read_process import ProcessReads
from canaryflow.app.local.prometheus import start_prometheus
from canaryflow.kernel.analysis import Observations
from canaryflow.kernel.contracts.looks import grid_ms, on_look_grid
from tests.support.metric_families import ExportedFamilies, exported_families
from tests.workflows import test_live_pairing as pairing
from tests.workflows.rollout_support import prometheus_step_context
from workflows.steps import StepInput
from workflows.steps.analysis import analyze as analyze_step

EVERY_S = 0.5
# (model, baseline, canary): names a regex or a PromQL string would misread unless escaped, a
# decoy that an unescaped `a.b` would also match, and one model with two rollouts.
ROLLOUTS = [
    ("plain", "1", "2"),
    ("plain", "1", "3"),
    ("a.b", "1", "2"),
    ("azb", "1", "2"),
    ("x|y", "4", "5"),
    ("p+q(r)*[s]{2}^$", "1", "2"),
    ('quo"te\\back', "1", "2"),
]


@dataclass
class Exporter(ExportedFamilies):
    rng: random.Random

    def serve(self, rounds: int = 1) -> None:
        """Some requests to every version of every rollout, and the canaries' shadow distances."""
        for _ in range(rounds):
            for model, baseline, canary in ROLLOUTS:
                for version in (baseline, canary):
                    for _ in range(self.rng.randint(1, 6)):
                        self.latency.labels(model=model, version=version).observe(
                            self.rng.lognormvariate(-4, 1)
                        )
                        code = "500" if self.rng.random() < 0.1 else "200"
                        self.requests.labels(model=model, version=version, code=code).inc()
                    self.memory.labels(model=model, version=version).set(self.rng.randint(1, 9) * 1e9)
                self.shadow.labels(model=model, version=canary, baseline=baseline).observe(self.rng.random())


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    with exported_families() as families:
        yield Exporter(**vars(families), rng=random.Random(7))


@pytest.fixture(params=["threads", "process"])
def batched_on(request: pytest.FixtureRequest) -> Iterator[Callable[..., BatchedSource]]:
    """Makes `BatchedSource`s on a Prometheus URL whose chunks are read on the reader's threads, or
    by a reader process (`ProcessReads`): both must give the same looks and the same isolation."""
    made: list[BatchedSource] = []

    def make(url: str, **options: object) -> BatchedSource:
        reads = ProcessReads(url) if request.param == "process" else None
        made.append(BatchedSource(PrometheusSource(url), chunk_reader=reads, **options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for source in made:
        source.close()


def _range_queries(url: str) -> int:
    """Range queries Prometheus has answered so far (its own counter)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = re.search(
        r'prometheus_http_requests_total\{code="200",handler="/api/v1/query_range"\} (\d+)', text
    )
    return int(found.group(1)) if found else 0


def _history(exporter: Exporter, url: str) -> float:
    """A few looks of traffic for every rollout, scraped and settled; returns the window start."""
    exporter.serve()
    source = PrometheusSource(url)
    _until(lambda: source.observe("plain", "1", "2", 0.0).baseline.requests, "scrape of the exporter")
    since = on_look_grid(time.time() + 0.1, EVERY_S)
    time.sleep(since - time.time())
    for _ in range(5):
        exporter.serve()
        time.sleep(EVERY_S)
    time.sleep(1.0 + source.settle_s)  # the last traffic scraped, and its look settled
    return since


def _until(check: Callable[[], object], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.time() + timeout_s
    while not check():
        if time.time() > deadline:
            raise AssertionError(f"no {what} within {timeout_s} s")
        time.sleep(0.1)


def _busy(looks: list[Observations]) -> bool:
    """Looks that count something on both arms and a shadow comparison (not vacuously equal)."""
    last = looks[-1]
    return last.baseline.requests > 0 and last.canary.requests > 0 and last.shadow_distance is not None


def test_the_look_grid_is_the_multiples_of_the_cadence() -> None:
    assert on_look_grid(1_765_000_001.2, 5.0) == 1_765_000_005.0
    assert on_look_grid(1_765_000_005.0, 5.0) == 1_765_000_005.0  # on the grid: stays
    assert on_look_grid(1_765_000_005.0004, 5.0) == 1_765_000_005.0  # the same millisecond
    assert on_look_grid(1_765_000_000.26, 0.25) == 1_765_000_000.5
    assert grid_ms(0.25) == 250 and grid_ms(1 / 3) is None
    assert on_look_grid(1_765_000_000.1, 1 / 3) == 1_765_000_000.1  # no millisecond grid: unmoved


@pytest.mark.prometheus
def test_batched_reads_equal_the_per_rollout_reads(
    exporter: Exporter, prometheus_server, batched_on: Callable[..., BatchedSource]
) -> None:
    server = prometheus_server([f"127.0.0.1:{exporter.port}"], interval_s=0.25)
    since = _history(exporter, server.url)
    per_rollout = PrometheusSource(server.url)
    expected = {r: per_rollout.observe_looks(*r, since, EVERY_S) for r in ROLLOUTS}
    assert all(len(looks) >= 6 and _busy(looks) for looks in expected.values()), expected

    batched = batched_on(server.url, reader=False)
    assert all(batched.observe_looks(*r, since, EVERY_S) == [] for r in ROLLOUTS)  # asked: not read yet
    before = _range_queries(server.url)
    batched.refresh()  # one tick of the reader
    assert _range_queries(server.url) - before == len(FAMILIES)  # one per family, for all seven
    got = {r: batched.observe_looks(*r, since, EVERY_S) for r in ROLLOUTS}
    for rollout, looks in got.items():  # a look may have settled since the per-rollout reads: the prefix
        common = min(len(looks), len(expected[rollout]))
        assert common >= 6 and looks[:common] == expected[rollout][:common], rollout

    # The next tick reads only the new looks, again one query per family, and each step gets
    # the looks after the ones it took.
    exporter.serve()
    time.sleep(2 * EVERY_S)
    before = _range_queries(server.url)
    batched.refresh()
    assert _range_queries(server.url) - before == len(FAMILIES)
    for rollout, looks in got.items():
        new = batched.observe_looks(*rollout, since, EVERY_S, from_look=len(looks) + 1)
        assert (
            new
            and new == per_rollout.observe_looks(*rollout, since, EVERY_S)[len(looks) : len(looks) + len(new)]
        )

    # A selector too long for one query is split by model: more queries, the same looks.
    chunked = batched_on(server.url, reader=False, max_selector_chars=1)
    for rollout in ROLLOUTS:
        chunked.observe_looks(*rollout, since, EVERY_S)
    before = _range_queries(server.url)
    chunked.refresh()
    models = len({model for model, _, _ in ROLLOUTS})
    assert _range_queries(server.url) - before == models * len(FAMILIES)
    for rollout in ROLLOUTS:
        looks = chunked.observe_looks(*rollout, since, EVERY_S)
        assert looks and looks == per_rollout.observe_looks(*rollout, since, EVERY_S)[: len(looks)], rollout

    # A step asked again from its first look (its kept state dropped) reads its history again.
    plain = ROLLOUTS[0]
    assert batched.observe_looks(*plain, since, EVERY_S) == []
    batched.refresh()
    again = batched.observe_looks(*plain, since, EVERY_S)
    assert again and again == per_rollout.observe_looks(*plain, since, EVERY_S)[: len(again)]

    # A step new to the source that kept its first looks (the source forgot it) reads on from its next.
    fresh = batched_on(server.url, reader=False)
    assert fresh.observe_looks(*plain, since, EVERY_S, from_look=3) == []
    fresh.refresh()
    later = fresh.observe_looks(*plain, since, EVERY_S, from_look=3)
    assert later and later == per_rollout.observe_looks(*plain, since, EVERY_S)[2 : 2 + len(later)]


class Proxy:
    """Forwards Prometheus' HTTP API to the real server; the query holding every string of `match`
    is held for `delay_s` or refused while `mode` says so (422, as Prometheus refuses a query that
    would load too many samples; the client retries a 503 for seconds first)."""

    def __init__(self, upstream: str, match: tuple[str, ...]) -> None:
        self.mode, self.delay_s, self.upstream, self.match = "pass", 0.0, upstream, match
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("query", [""])[0]
                mode = outer.mode if all(part in query for part in outer.match) else "pass"
                if mode == "slow":
                    time.sleep(outer.delay_s)
                if mode == "fail":
                    status = 422
                    body = b'{"status":"error","errorType":"execution","error":"too many samples"}'
                else:
                    try:
                        with urllib.request.urlopen(outer.upstream + self.path, timeout=10) as answer:
                            status, body = answer.status, answer.read()
                    except urllib.error.HTTPError as exc:
                        status, body = exc.code, exc.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.prometheus
def test_a_slow_or_failing_query_holds_back_only_the_steps_it_feeds(
    exporter: Exporter, prometheus_server, batched_on: Callable[..., BatchedSource]
) -> None:
    server = prometheus_server([f"127.0.0.1:{exporter.port}"], interval_s=0.25)
    since = _history(exporter, server.url)
    held, fast = ("a.b", "1", "2"), ("plain", "1", "2")
    # One query: the GPU memory family of the held model (its regex as sent).
    proxy = Proxy(server.url, ("canaryflow_gpu_memory_bytes", 'a\\\\.b"'))
    batched = batched_on(proxy.url, max_selector_chars=1)
    per_rollout = PrometheusSource(server.url)
    calls: list[float] = []

    def looks(rollout: tuple[str, str, str], from_look: int = 1) -> list[Observations]:
        started = time.perf_counter()
        try:
            return batched.observe_looks(*rollout, since, EVERY_S, from_look=from_look)
        finally:
            calls.append(time.perf_counter() - started)

    try:
        # Held for 4 s: the other model's step gets its looks meanwhile; the held one none, at once.
        proxy.mode, proxy.delay_s = "slow", 4.0
        assert looks(held) == [] and looks(fast) == []
        _until(lambda: looks(fast), "look of the fast model", timeout_s=3.0)
        assert looks(held) == []
        got = looks(fast)
        assert got == per_rollout.observe_looks(*fast, since, EVERY_S)[: len(got)]
        assert max(calls) < 0.5  # the caller never waits on the held query
        _until(lambda: looks(held), "look of the held model once its query answered", timeout_s=10.0)
        caught_up = looks(held)
        assert caught_up == per_rollout.observe_looks(*held, since, EVERY_S)[: len(caught_up)]

        # Refused: once the held step has taken its looks it reads the error (and waits, as with
        # per-rollout reads); the other step goes on getting new looks.
        proxy.mode = "pass"
        taken = {held: len(caught_up), fast: len(looks(fast))}
        _until(lambda: looks(held, taken[held] + 1), "look of the held model answered at once")
        taken[held] += len(looks(held, taken[held] + 1))
        proxy.mode = "fail"
        with pytest.raises(MetricsError, match="422"):
            deadline = time.time() + 10.0
            while time.time() < deadline:
                taken[held] += len(looks(held, taken[held] + 1))
                time.sleep(0.1)
        exporter.serve()
        _until(lambda: looks(fast, taken[fast] + 1), "new look of the fast model while the other fails")

        # Answered again: the held step reads on from where it was (the error until the next read).
        proxy.mode = "pass"

        def recovered() -> list[Observations]:
            try:
                return looks(held, taken[held] + 1)
            except MetricsError:
                return []

        _until(recovered, "look of the held model after the failure")
        resumed = looks(held, taken[held] + 1)
        expected = per_rollout.observe_looks(*held, since, EVERY_S)
        assert resumed == expected[taken[held] : taken[held] + len(resumed)]
    finally:
        batched.close()
        proxy.close()


@pytest.mark.prometheus
def test_the_analyze_step_on_batched_reads_decides_as_on_its_own_reads(
    tmp_path: Path, prometheus_binary_path: str
) -> None:
    """Ten minutes of a bursty A/A canary in Prometheus' storage (`test_live_pairing`): the step
    waits on its first call (nothing read yet), and once the reader has read its history it decides
    at the same look, with the same verdict, as the step reading its own looks."""
    promtool = Path(prometheus_binary_path).with_name("promtool")
    if not promtool.exists():
        pytest.skip("promtool (Debian package prometheus) is not installed")
    every_s = pairing.EVERY_S
    start = math.floor(time.time() / every_s) * every_s - pairing.DURATION_S - every_s
    looks = start + every_s * np.arange(int(pairing.DURATION_S / every_s) + 1)
    history = tmp_path / "history.om"
    history.write_text(pairing._openmetrics(pairing._bursty_log(start), looks))
    data = tmp_path / "prometheus" / "data"
    blocks = [str(promtool), "tsdb", "create-blocks-from", "openmetrics", "-q", str(history), str(data)]
    subprocess.run(blocks, check=True, capture_output=True, timeout=60)
    server = start_prometheus(tmp_path / "prometheus", ["127.0.0.1:9"], interval_s=60.0)
    try:
        step = StepInput(spec=pairing.SPEC, params={"step_index": 0}, started_at=start, policy=pairing.POLICY)
        own = analyze_step(prometheus_step_context(tmp_path, server.url, pairing.POLICY), step)
        assert own.state == "succeeded", own.message
        context = prometheus_step_context(tmp_path, server.url, pairing.POLICY)
        batched = BatchedSource(PrometheusSource(server.url), reader=False)
        context.metrics = batched
        first = analyze_step(context, step)
        assert first.state == "running" and "waiting for the first look" in first.message
        batched.refresh()
        assert analyze_step(context, step).outputs == own.outputs
    finally:
        server.stop()
