"""Weighted, sticky routing between versions, and routing changes under load without a failed request."""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from canaryflow.kernel.contracts.routing import RoutingConfig
from inference.routing_table import RoutingTable
from tests.inference.conftest import SENTENCES, routing, running_server


def _bounds(n: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    sd = math.sqrt(n * p * (1 - p))
    return n * p - sigmas * sd, n * p + sigmas * sd


def test_split_matches_weights() -> None:
    table = RoutingTable.from_config(
        routing(("1", "mem://a", 90, "baseline"), ("2", "mem://b", 10, "canary"))
    )
    rng = random.Random(5)
    n = 20000
    counts = Counter(table.choose(rng=rng) for _ in range(n))
    low, high = _bounds(n, 0.10)
    assert low <= counts["2"] <= high, counts
    sticky = Counter(table.choose(sticky_key=f"user-{i}") for i in range(n))
    assert low <= sticky["2"] <= high, sticky


def test_sticky_key_keeps_its_version_until_weights_pass_it() -> None:
    at_10 = RoutingTable.from_config(
        routing(("1", "mem://a", 90, "baseline"), ("2", "mem://b", 10, "canary"))
    )
    at_50 = RoutingTable.from_config(
        routing(("1", "mem://a", 50, "baseline"), ("2", "mem://b", 50, "canary"))
    )
    keys = [f"client-{i}" for i in range(2000)]
    assert all(at_10.choose(sticky_key=k) == at_10.choose(sticky_key=k) for k in keys)
    # Raising the canary's weight moves clients only towards the canary, never back.
    assert all(at_50.choose(sticky_key=k) == "2" for k in keys if at_10.choose(sticky_key=k) == "2")


def test_zero_weight_version_gets_no_traffic() -> None:
    table = RoutingTable.from_config(
        routing(("1", "mem://a", 100, "baseline"), ("2", "mem://b", 0, "canary"))
    )
    assert {table.choose() for _ in range(2000)} == {"1"}


def test_http_split_and_version_header(loader) -> None:
    config = routing(("1", "mem://minilm", 90, "baseline"), ("2", "mem://minilm-perturbed", 10, "canary"))
    n = 240
    with running_server(config, loader) as server, server.client() as client:
        seen: Counter[str] = Counter()
        for i in range(n):
            response = client.post("/v1/embeddings", json={"input": SENTENCES[i % 3], "model": "minilm"})
            assert response.status_code == 200
            seen[response.headers["X-Model-Version"]] += 1
        low, high = _bounds(n, 0.10)
        assert low <= seen["2"] <= high, seen
        sticky = {
            client.post(
                "/v1/embeddings", json={"input": "hi", "model": "minilm"}, headers={"X-Canary-Key": "alice"}
            ).headers["X-Model-Version"]
            for _ in range(10)
        }
        assert len(sticky) == 1
        pinned = client.post("/v1/embeddings", json={"input": "hi", "model": "minilm/2"})
        assert pinned.headers["X-Model-Version"] == "2"
        assert server.metric("canaryflow_routing_weight", model="minilm", version="2") == 10


def _write(path: Path, config: RoutingConfig) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    os.replace(tmp, path)  # as a ConfigMap update does: readers see the old file or the new one


def _wait_weights(client: httpx.Client, weights: dict[str, int], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get("/ready").json()["weights"] != weights:
        assert time.monotonic() < deadline, "routing change not applied"
        time.sleep(0.05)


@pytest.mark.timeout(240)
def test_routing_file_change_under_load_fails_no_request(loader, tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    _write(path, routing(("1", "mem://minilm", 100, "baseline")))
    results: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def load(url: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                r = client.post("/v1/embeddings", json={"input": SENTENCES[:2], "model": "minilm"})
                results.append((time.monotonic(), r.status_code, r.headers.get("X-Model-Version", "")))

    with running_server(None, loader, routing_file=path, routing_poll_s=0.1, retire_grace_s=0.2) as server:
        threads = [threading.Thread(target=load, args=(server.url,)) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            with server.client() as client:
                time.sleep(0.5)
                _write(
                    path,
                    routing(
                        ("1", "mem://minilm", 50, "baseline"), ("2", "mem://minilm-perturbed", 50, "canary")
                    ),
                )
                _wait_weights(client, {"1": 50, "2": 50})
                time.sleep(1.5)
                _write(path, routing(("2", "mem://minilm-perturbed", 100, "stable")))
                _wait_weights(client, {"2": 100})
                switched = time.monotonic()
                time.sleep(1.0)
                path.write_text("model: minilm\nversions: []\n")  # invalid: refused, routing kept
                time.sleep(0.6)
                assert client.get("/ready").json()["weights"] == {"2": 100}
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        assert server.metric("canaryflow_routing_reloads_total", outcome="error") >= 1
        assert server.metric("canaryflow_routing_reloads_total", outcome="ok") == 2
    codes = Counter(code for _, code, _ in results)
    assert codes == {200: len(results)}, codes
    versions = Counter(v for _, _, v in results)
    assert versions["1"] > 0 and versions["2"] > 0
    assert all(v == "2" for t, _, v in results if t > switched + 0.1)
