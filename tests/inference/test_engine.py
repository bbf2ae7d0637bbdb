"""Engine mode: an HTTP front that tokenizes and routes, and an engine that holds the models.

The engine runs on its own event loop in a thread here (a separate process in production); the
front reaches it over the same Unix socket protocol either way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inference.engine import run_engine
from inference.metrics import ServerMetrics
from inference.server import ModelServer
from inference.settings import InferenceSettings
from tests.inference.conftest import SENTENCES, RunningServer, routing, running_server


@pytest.fixture(scope="module")
def engine_front(loader, tmp_path_factory) -> Iterator[RunningServer]:
    socket_path = str(Path(tmp_path_factory.mktemp("engine")) / "engine.sock")
    config = routing(("1", "mem://minilm", 70, "baseline"), ("2", "mem://minilm-perturbed", 30, "canary"))
    loop = asyncio.new_event_loop()
    server = ModelServer(InferenceSettings(device="cpu", max_wait_ms=2), ServerMetrics(), loader)
    task = loop.create_task(run_engine(server, config, socket_path))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        with running_server(None, None, engine_socket=socket_path) as front:
            yield front
    finally:
        loop.call_soon_threadsafe(task.cancel)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def test_front_serves_engine_embeddings_in_order(
    engine_front: RunningServer, st_model, perturbed_model
) -> None:
    expected = {"1": st_model, "2": perturbed_model}
    requests = [SENTENCES[i % 8 : i % 8 + 1 + i % 4] for i in range(40)]

    def call(texts: list[str]) -> tuple[list[str], str, np.ndarray]:
        with engine_front.client() as client:
            response = client.post("/v1/embeddings", json={"input": texts, "model": "minilm"})
            assert response.status_code == 200, response.text
            vectors = np.array([d["embedding"] for d in response.json()["data"]])
            return texts, response.headers["X-Model-Version"], vectors

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(call, requests))
    for texts, version, vectors in results:
        np.testing.assert_allclose(vectors, expected[version].encode(texts), atol=1e-5)
    versions = Counter(version for _, version, _ in results)
    assert set(versions) == {"1", "2"}, "the front routes with the table the engine pushed"


def test_front_reports_engine_state(engine_front: RunningServer) -> None:
    with engine_front.client() as client:
        ready = client.get("/ready").json()
        assert ready["ready"] is True and ready["weights"] == {"1": 70, "2": 30}
        assert ready["loaded"] == ["1", "2"]
        assert client.get("/ready", params={"version": "2"}).status_code == 200
        refused = client.post("/v1/embeddings", json={"input": "x", "model": "minilm/7"})
        assert refused.status_code == 404
