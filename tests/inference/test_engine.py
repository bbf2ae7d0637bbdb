"""Engine mode: an HTTP front that tokenizes and routes, and an engine that holds the models.

The engine runs on its own event loop in a thread here (a separate process in production); the
front reaches it over the same Unix socket protocol either way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inference.engine_process import run_engine
from inference.metrics import ServerMetrics
from inference.server import ModelServer
from inference.server_settings import InferenceSettings
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
            front.app.state.engine_server, front.app.state.engine_socket = server, socket_path
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


def test_a_request_past_its_deadline_is_dropped_by_the_engine(engine_front: RunningServer) -> None:
    """The front's deadline cancels the request; the engine drops it before it is computed."""
    engine: ModelServer = engine_front.app.state.engine_server
    batcher = engine.runtimes["1"].batcher

    def tokens() -> float:
        value = engine.metrics.registry.get_sample_value(
            "canaryflow_tokens_total", {"model": "minilm", "version": "1"}
        )
        return value or 0.0

    long_texts = [("lorem ipsum dolor sit amet " * 60) + str(i) for i in range(12)]  # 256 tokens each
    before = tokens()
    out: dict[str, int] = {}

    def busy() -> None:
        with engine_front.client() as client:
            body = {"input": long_texts, "model": "minilm/1"}
            out["status"] = client.post("/v1/embeddings", json=body).status_code

    thread = threading.Thread(target=busy)
    thread.start()
    with running_server(
        None, None, engine_socket=engine_front.app.state.engine_socket, request_timeout_s=0.3
    ) as front:
        deadline = time.monotonic() + 30
        while not batcher.pending_texts:  # the long batch holds the engine's only forward slot
            assert time.monotonic() < deadline and "status" not in out
            time.sleep(0.01)
        with front.client() as client:
            late = client.post(
                "/v1/embeddings", json={"input": ["too late", "for this"], "model": "minilm/1"}
            )
    thread.join()
    assert out["status"] == 200 and late.status_code == 504, late.text
    while batcher.pending_texts:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert tokens() - before == 12 * 256, "the engine computed only the long batch"


def test_the_engine_refusing_after_the_hop_is_a_429(loader, tmp_path: Path) -> None:
    """The engine's queue is full only once a request got there: the front answers 429, not 500."""
    socket_path = str(tmp_path / "engine.sock")
    loop = asyncio.new_event_loop()
    settings = InferenceSettings(device="cpu", max_wait_ms=2, max_queue_tokens=300, concurrent_batches=1)
    server = ModelServer(settings, ServerMetrics(), loader)
    task = loop.create_task(run_engine(server, routing(("1", "mem://minilm", 100, "stable")), socket_path))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    long_texts = [("lorem ipsum dolor sit amet " * 60) + str(i) for i in range(12)]  # 256 tokens each
    try:
        with running_server(None, None, engine_socket=socket_path) as front:

            def post(i: int) -> int:
                with front.client() as client:
                    body = {"input": [*long_texts, str(i)], "model": "minilm"}
                    return client.post("/v1/embeddings", json=body).status_code

            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                statuses = Counter(pool.map(post, range(6)))
    finally:
        loop.call_soon_threadsafe(task.cancel)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
    assert set(statuses) <= {200, 429} and statuses[429] >= 1, statuses


@pytest.mark.parametrize("cut", ["texts", "tokens"])
def test_requests_of_one_turn_travel_as_groups_and_get_their_own_rows(
    engine_front: RunningServer, st_model, cut: str
) -> None:
    """Requests submitted in one event-loop turn reach the engine as groups of at most
    `max_group_texts` texts and `max_group_tokens` tokens (a batch holds one graphed pass, and a
    group is never split); each request gets its own rows back, and a request cancelled on the way
    leaves the others of its group unharmed."""
    from inference.engine_process import EngineClient

    engine: ModelServer = engine_front.app.state.engine_server
    submitted: list[int] = []
    group_tokens: list[int] = []
    original = engine.submit

    def counting_submit(version: str, tokens):  # the engine's own submit, counted
        submitted.append(len(tokens))
        group_tokens.append(int(tokens.lengths.sum()))
        return original(version, tokens)

    requests = [SENTENCES[i % 8 : i % 8 + 1 + i % 3] for i in range(10)]  # 1-3 texts each
    limits: dict[str, int] = {}

    async def drive() -> list[np.ndarray | None]:
        async def connected(**caps: int) -> EngineClient:
            client = EngineClient(engine_front.app.state.engine_socket, **caps)
            await client.start()
            while "1" not in client.loaded:
                await asyncio.sleep(0.01)
            return client

        first = await connected()  # for the tokenizer, to size the token cap from the requests
        version = first.info("1")
        assert version is not None
        await first.close()
        tokens = [version.tokenizer.tokenize(texts) for texts in requests]
        largest = max(int(t.lengths.sum()) for t in tokens)
        caps = {"max_group_texts": 8} if cut == "texts" else {"max_group_tokens": 2 * largest}
        limits.update(texts=caps.get("max_group_texts", 256), tokens=caps.get("max_group_tokens", 1 << 30))
        client = await connected(**caps)
        futures = [client.submit("1", t) for t in tokens]  # one turn: no await in between
        futures[3].cancel()
        done = await asyncio.gather(*futures, return_exceptions=True)
        await client.close()
        return [None if isinstance(r, BaseException) else r.embeddings for r in done]

    engine.submit = counting_submit  # type: ignore[method-assign]
    try:
        got = asyncio.run(drive())
    finally:
        engine.submit = original  # type: ignore[method-assign]
    texts = [len(r) for i, r in enumerate(requests) if i != 3]
    assert sum(submitted) == sum(texts) and all(n <= limits["texts"] for n in submitted), submitted
    assert all(n <= limits["tokens"] for n in group_tokens), (group_tokens, limits)
    assert len(submitted) < len(texts), f"every request travelled alone: {submitted}"
    assert got[3] is None
    for i, texts_i in enumerate(requests):
        rows = got[i]
        if i != 3:
            assert rows is not None
            np.testing.assert_allclose(rows, st_model.encode(texts_i), atol=1e-5)


def test_a_front_whose_engine_is_gone_refuses_at_once(engine_front: RunningServer, tmp_path: Path) -> None:
    """The engine's end of the socket closes (its process died): requests queued before it are
    failed, and a request after it is refused at once instead of waiting for an answer that
    never comes (the front had kept queueing into the closed socket)."""
    from inference.engine_process import EngineClient

    engine_socket = engine_front.app.state.engine_socket
    relay_path = str(tmp_path / "relay.sock")

    async def drive() -> tuple[str, float]:
        links: list[asyncio.StreamWriter] = []

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)
            writer.close()

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_unix_connection(engine_socket)
            links.extend([writer, up_writer])
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

        server = await asyncio.start_unix_server(relay, path=relay_path)
        client = EngineClient(relay_path)
        await client.start()
        while "1" not in client.loaded:
            await asyncio.sleep(0.01)
        info = client.info("1")
        assert info is not None
        tokens = info.tokenizer.tokenize(SENTENCES[:2])
        await client.submit("1", tokens)  # served through the relay
        for link in links:  # the engine's end goes away
            link.close()
        server.close()
        while client.load_error is None:
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        with pytest.raises(RuntimeError) as refused:
            client.submit("1", tokens)
        took = time.perf_counter() - started
        await client.close()
        return str(refused.value), took

    message, took = asyncio.run(drive())
    assert "engine connection lost" in message
    assert took < 0.1
