"""A scrape target standing in for the inference servers: their `/metrics` contract (CONTRACTS.md), with
traffic arriving as time passes. Each scrape first adds the requests served since the last one, drawn
from a latency distribution per version, so the real metrics source and analysis run on it unchanged."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from canaryflow.kernel.contracts.buckets import LATENCY_BUCKETS_S


class TrafficServer:
    def __init__(self, model: str, medians_ms: dict[str, float], rate_per_s: float = 4000.0, seed: int = 0):
        self.model, self.medians_ms, self.rate = model, medians_ms, rate_per_s
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "canaryflow_request_duration_seconds",
            "latency",
            ["model", "version"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.requests = Counter(
            "canaryflow_requests", "requests", ["model", "version", "code"], registry=self.registry
        )
        self.rng = np.random.default_rng(seed)
        self.last = time.time()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = outer.scrape()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/metrics"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def scrape(self) -> bytes:
        with self.lock:
            now = time.time()
            n = int((now - self.last) * self.rate)
            self.last = now
            for version, median in self.medians_ms.items():
                samples = self.rng.lognormal(np.log(median / 1000), 0.3, size=n)
                child = self.latency.labels(self.model, version)
                for s in samples:
                    child.observe(float(s))
                self.requests.labels(self.model, version, "200").inc(n)
            return generate_latest(self.registry)

    def __enter__(self) -> TrafficServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
