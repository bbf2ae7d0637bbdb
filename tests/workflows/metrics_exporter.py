"""Real inference metrics for the rollout tests: the inference server's own Prometheus series
(`inference.metrics.ServerMetrics`) served over HTTP, fed by the test instead of by embedding
requests, so a rollout's traffic (and a slower canary) takes milliseconds instead of a model run.
"""

from __future__ import annotations

import random

from prometheus_client import start_wsgi_server

from inference.metrics import ServerMetrics


class Exporter:
    """An inference server's metrics endpoint, fed by the test instead of by embedding requests."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.metrics = ServerMetrics()
        self._server, self._thread = start_wsgi_server(0, addr="127.0.0.1", registry=self.metrics.registry)
        self.url = f"http://127.0.0.1:{self._server.server_port}/metrics"

    def serve(self, version: str, count: int, median_ms: float, rng: random.Random, errors: int = 0) -> None:
        for _ in range(count):
            latency_s = median_ms / 1000 * rng.lognormvariate(0.0, 0.25)
            self.metrics.request_duration.labels(self.model, version).observe(latency_s)
            self.metrics.requests.labels(self.model, version, "200").inc()
        if errors:
            self.metrics.requests.labels(self.model, version, "500").inc(errors)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
