"""Both metrics sources against a real prometheus_client exporter; the Prometheus one through the
real Prometheus server scraping it. They must report exactly what was served after the step start."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_api_client import PrometheusConnect

from canaryflow.adapters.metrics import MetricsError, MetricsSource
from canaryflow.adapters.metrics.factory import MetricsSettings, metrics_source_from_settings
from canaryflow.adapters.metrics.prometheus import SETTLE_S, PrometheusSource
from canaryflow.adapters.metrics.scrape import ScrapeSource
from canaryflow.kernel.analysis import DEFAULT_LATENCY_BUCKETS_S, Observations
from tests.support.metric_families import ExportedFamilies, exported_families
from tests.support.net import free_port


class Exporter(ExportedFamilies):
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def serve(self, version: str, latencies_s: list[float], codes: list[str]) -> None:
        for value, code in zip(latencies_s, codes, strict=True):
            self.latency.labels(model="minilm", version=version).observe(value)
            self.requests.labels(model="minilm", version=version, code=code).inc()


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    with exported_families() as families:
        yield Exporter(**vars(families))


def _step_traffic(exp: Exporter) -> None:
    exp.serve("1", [0.009, 0.011, 0.019, 0.5, 20.0], ["200", "200", "500", "200", "404"])
    exp.serve("2", [0.012, 0.013, 0.08], ["200", "503", "200"])
    exp.memory.labels(model="minilm", version="1").set(1.5e9)
    exp.memory.labels(model="minilm", version="2").set(1.6e9)
    for value in (0.01, 0.02, 0.4):
        exp.shadow.labels(model="minilm", version="2", baseline="1").observe(value)


def _check_step(obs: Observations) -> None:
    assert (obs.baseline.requests, obs.baseline.errors) == (5, 1)
    assert (obs.canary.requests, obs.canary.errors) == (3, 1)
    assert obs.baseline.latency_s is not None and obs.canary.latency_s is not None
    bounds = obs.baseline.latency_s.bounds
    assert bounds == pytest.approx(list(DEFAULT_LATENCY_BUCKETS_S))

    def bucket_at(x: float) -> int:  # the first bucket whose bound is >= x
        return next(i for i, b in enumerate(bounds) if b >= x - 1e-12)

    assert obs.baseline.latency_s.counts[bucket_at(0.010)] == 1
    assert obs.baseline.latency_s.counts[bucket_at(0.020)] == 3
    assert obs.baseline.latency_s.counts[-1] == 4 and obs.baseline.latency_s.total == 5
    assert obs.canary.latency_s.counts[bucket_at(0.015)] == 2
    assert obs.canary.gpu_memory_bytes == pytest.approx(1.6e9)
    assert obs.shadow_distance is not None and obs.shadow_distance.total == 3


def test_scrape_source_counts_only_what_came_after_the_step_start(exporter: Exporter) -> None:
    exporter.serve("1", [0.01] * 7, ["200"] * 7)  # before the step: must not count
    source = ScrapeSource([exporter.url])
    since = time.time()
    first = source.observe("minilm", "1", "2", since)
    assert first.baseline.requests == 0 and first.canary.requests == 0
    _step_traffic(exporter)
    obs = source.observe("minilm", "1", "2", since)
    _check_step(obs)
    assert isinstance(source, MetricsSource)


def test_scrape_source_finds_the_first_look_after_the_canarys_first_request(exporter: Exporter) -> None:
    exporter.serve("2", [0.01], ["200"])  # served before the step (an earlier attempt): not a first request
    source = ScrapeSource([exporter.url])
    since = time.time()
    assert source.first_request_at("minilm", "2", since, 0.5) is None
    exporter.serve("1", [0.01] * 3, ["200"] * 3)  # the baseline's requests are not the canary's
    assert source.first_request_at("minilm", "2", since, 0.5) is None
    exporter.serve("2", [0.01], ["503"])
    first = source.first_request_at("minilm", "2", since, 0.5)
    assert first is not None and since <= first <= time.time()
    exporter.serve("2", [0.01], ["200"])
    assert source.first_request_at("minilm", "2", since, 0.5) == first  # the first look, kept


def test_scrape_source_keeps_its_calls_as_the_looks(exporter: Exporter) -> None:
    source = ScrapeSource([exporter.url])
    since = time.time()
    assert [o.baseline.requests for o in source.observe_looks("minilm", "1", "2", since, 0.0)] == [0]
    _step_traffic(exporter)
    looks = source.observe_looks("minilm", "1", "2", since, 0.0)
    assert len(looks) == 2 and looks[0].canary.requests == 0 and looks[0].elapsed_s < looks[1].elapsed_s
    _check_step(looks[1])
    # At most one kept per `every_s`: a call sooner than that is a look this time only.
    assert len(source.observe_looks("minilm", "1", "2", since, 3600.0)) == 3
    assert len(source.observe_looks("minilm", "1", "2", since, 3600.0)) == 3
    # No history behind the servers' counters: a new process starts from its own first call.
    assert len(ScrapeSource([exporter.url]).observe_looks("minilm", "1", "2", since, 0.0)) == 1


def test_scrape_source_names_an_unreachable_target() -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"
    with pytest.raises(MetricsError, match=r"scrape http://127\.0\.0\.1"):
        ScrapeSource([url], timeout_s=1).observe("minilm", "1", "2", time.time())


def _wait_for(prom: PrometheusConnect, promql: str, expected: float, timeout_s: float = 30.0) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        result = prom.custom_query(promql)
        if result and float(result[0]["value"][1]) == expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"prometheus never showed {promql} == {expected}")


@pytest.mark.prometheus
def test_prometheus_source_reads_the_step_from_real_prometheus(exporter: Exporter, prometheus_server) -> None:
    server = prometheus_server([f"127.0.0.1:{exporter.port}"], interval_s=0.5)
    prom = PrometheusConnect(url=server.url, disable_ssl=True)
    exporter.serve("1", [0.01] * 7, ["200"] * 7)  # before the step
    _wait_for(prom, 'sum(canaryflow_requests_total{model="minilm",version="1"})', 7)
    time.sleep(1.2)  # a couple more scrapes of the pre-step state
    since = time.time()
    scrape = ScrapeSource([exporter.url])
    scrape.observe("minilm", "1", "2", since)  # its reading at the step start
    _step_traffic(exporter)
    _wait_for(prom, 'sum(canaryflow_requests_total{model="minilm",version="1"})', 12)
    _wait_for(prom, 'sum(canaryflow_shadow_cosine_distance_count{model="minilm"})', 3)
    source = metrics_source_from_settings(MetricsSettings(backend="prometheus", prometheus_url=server.url))
    assert isinstance(source, PrometheusSource)
    obs = source.observe("minilm", "1", "2", since)
    _check_step(obs)
    assert obs.elapsed_s > 0
    # At every look since the step start (range queries): the last look sees the whole step.
    time.sleep(0.3 + SETTLE_S)  # a look after the scrape that showed it, settled
    looks = source.observe_looks("minilm", "1", "2", since, 0.25)
    assert [o.elapsed_s for o in looks] == pytest.approx([0.25 * k for k in range(1, len(looks) + 1)])
    _check_step(looks[-1])
    assert looks[-1].model_dump(exclude={"elapsed_s"}) == obs.model_dump(exclude={"elapsed_s"})
    # Both sources give the engine the same observations of the same step.
    scraped = scrape.observe("minilm", "1", "2", since)
    assert scraped.model_dump(exclude={"elapsed_s"}) == obs.model_dump(exclude={"elapsed_s"})


def test_prometheus_source_names_an_unreachable_server() -> None:
    source = PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout_s=1)
    with pytest.raises(MetricsError, match=r"prometheus http://127\.0\.0\.1"):
        source.observe("minilm", "1", "2", time.time() - 60)


def test_factory_refuses_scrape_without_targets() -> None:
    with pytest.raises(ValueError, match="scrape_targets"):
        metrics_source_from_settings(MetricsSettings(backend="scrape"))
