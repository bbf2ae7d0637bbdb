"""Admission control: body limit, deadlines, work dropped for clients that left, reloads off the loop.

Each test holds the only forward slot with one large request (12 texts of 256 tokens: a second or more on
a CPU), so that what comes after it waits in the queue, where a deadline or a disconnect must take
it out before it costs any model time. `canaryflow_tokens_total` counts only tokens computed.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from inference.server import MAX_ROUTING_FILE_BYTES
from tests.inference.conftest import RunningServer, routing, running_server

LONG = [("lorem ipsum dolor sit amet " * 60) + str(i) for i in range(12)]  # 256 tokens each, truncated
LATE = ["a sentence that waits behind the long batch", "and another one"]


@pytest.fixture(scope="module")
def server(loader) -> Iterator[RunningServer]:
    config = routing(("1", "mem://minilm", 100, "stable"))
    settings: dict[str, Any] = {"concurrent_batches": 1, "max_wait_ms": 0, "max_body_bytes": 1 << 20}
    with running_server(config, loader, request_timeout_s=0.3, **settings) as running:
        yield running


def _post(server: RunningServer, texts: list[str], out: dict[str, int]) -> None:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        out["status"] = client.post("/v1/embeddings", json={"input": texts, "model": "minilm"}).status_code


def _occupied(server: RunningServer) -> tuple[threading.Thread, dict[str, int]]:
    """Start the long request and return once it holds the forward slot."""
    out: dict[str, int] = {}
    busy = threading.Thread(target=_post, args=(server, LONG, out))
    busy.start()
    deadline = time.monotonic() + 30
    while not server.app.state.backend.runtimes["1"].batcher.pending_texts:
        assert time.monotonic() < deadline and "status" not in out, out
        time.sleep(0.01)
    return busy, out


def _tokens_after_idle(server: RunningServer) -> float:
    """Tokens computed so far, once nothing is queued or running (the busy request's answer may
    have been a 504 while its batch still ran)."""
    deadline = time.monotonic() + 60
    while server.app.state.backend.runtimes["1"].batcher.pending_texts:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return server.metric("canaryflow_tokens_total", model="minilm", version="1")


def test_body_over_the_limit_is_refused_without_reading_it(server: RunningServer) -> None:
    big = b'{"model": "minilm", "input": "' + b"x" * 1_100_000 + b'"}'
    with server.client() as client:
        declared = client.post("/v1/embeddings", content=big, headers={"Content-Type": "application/json"})
        streamed = client.post("/v1/embeddings", content=iter([big[:600_000], big[600_000:]]))
        assert client.get("/healthz").status_code == 200
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["code"] == "request_too_large" and "max_body_bytes" in error["message"]


def test_request_past_its_deadline_gets_504_and_is_never_computed(server: RunningServer) -> None:
    tokens_before = _tokens_after_idle(server)
    busy, _ = _occupied(server)
    with server.client() as client:
        started = time.monotonic()
        late = client.post("/v1/embeddings", json={"input": LATE, "model": "minilm"})
        waited = time.monotonic() - started
    busy.join()
    assert late.status_code == 504, late.text
    assert (
        late.json()["error"]["code"] == "timeout" and "request_timeout_s" in late.json()["error"]["message"]
    )
    assert waited < 5
    assert _tokens_after_idle(server) - tokens_before == 12 * 256, "only the long batch was computed"


def test_work_of_a_client_that_left_is_dropped(server: RunningServer) -> None:
    tokens_before = _tokens_after_idle(server)
    gone_before = server.metric("canaryflow_requests_total", model="minilm", version="1", code="499")
    busy, _ = _occupied(server)
    body = b'{"model": "minilm", "input": ["the client hangs up", "before its turn"]}'
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
        time.sleep(0.1)
    busy.join()
    deadline = time.monotonic() + 10
    while server.metric("canaryflow_requests_total", model="minilm", version="1", code="499") == gone_before:
        assert time.monotonic() < deadline, "the disconnect was not noticed"
        time.sleep(0.02)
    assert _tokens_after_idle(server) - tokens_before == 12 * 256, (
        "the departed client's texts were not computed"
    )
    assert server.app.state.backend.runtimes["1"].batcher.queued_tokens == 0


def _bloated_routing(n: int) -> str:
    """A routing file of `n` versions (weights not adding up: refused after it is parsed)."""
    lines = [f'  - {{version: "{i}", uri: "mem://minilm", weight: 0, role: stable}}' for i in range(n)]
    return "model: minilm\nversions:\n" + "\n".join(lines) + "\n"


def test_routing_file_is_parsed_off_the_event_loop(loader, tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(routing(("1", "mem://minilm", 100, "stable")).model_dump(mode="json")))
    with running_server(None, loader, routing_file=path, routing_poll_s=0.05) as running:
        bloated = _bloated_routing(9000)  # ~0.6 MB: seconds of YAML parsing
        assert len(bloated) < MAX_ROUTING_FILE_BYTES
        path.write_text(bloated)
        slowest = 0.0
        with running.client() as client:
            deadline = time.monotonic() + 60
            while running.metric("canaryflow_routing_reloads_total", outcome="error") < 1:
                assert time.monotonic() < deadline
                started = time.monotonic()
                assert client.get("/healthz").status_code == 200
                slowest = max(slowest, time.monotonic() - started)
                time.sleep(0.02)
            assert slowest < 1.0, f"/healthz took {slowest:.2f} s while the file was parsed"
            path.write_text(bloated + "#" * MAX_ROUTING_FILE_BYTES)  # too large: refused unparsed
            while running.metric("canaryflow_routing_reloads_total", outcome="error") < 2:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            ok = client.post("/v1/embeddings", json={"input": "still served", "model": "minilm"})
            assert ok.status_code == 200 and ok.headers["X-Model-Version"] == "1"


def test_queue_bounded_in_time_refuses_what_would_wait_too_long(loader) -> None:
    config = routing(("1", "mem://minilm", 100, "stable"))
    with running_server(config, loader, concurrent_batches=1, max_wait_ms=0, max_queue_wait_ms=50) as server:
        with server.client() as client:  # one batch first: the server learns its throughput
            assert client.post("/v1/embeddings", json={"input": LATE, "model": "minilm"}).status_code == 200
            busy, out = _occupied(server)
            late = client.post("/v1/embeddings", json={"input": LATE, "model": "minilm"})
        busy.join()
    assert out["status"] == 200
    assert late.status_code == 429, late.text
    assert "max_queue_wait_ms" in late.json()["error"]["message"] and int(late.headers["Retry-After"]) >= 1
