"""The benchmark's load generators count every answer by its status and send the bodies they say.

A small keep-alive HTTP/1.1 server answers every third request with 429 and records the bodies it
got; both generators (the Python one and wrk with bench/wrk_embeddings.lua) must report the 429s
beside the 200s, in the server's proportion, and no more answers than the server sent. The wrk
test needs the unpacked Debian package (`bash bench/tools.sh`) or a wrk on PATH.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.loadgen import Target, load_test
from bench.loadgen_wrk import find_wrk, parse_wrk_output, wrk_load_test


class _Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.sent: dict[int, int] = {}
        self.bodies: list[tuple[str, dict]] = []


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Recorder

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.bodies.append((self.path, body))
            status = 429 if len(self.server.bodies) % 3 == 0 else 200
            self.server.sent[status] = self.server.sent.get(status, 0) + 1
        answer = b'{"data": []}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    server = _Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _check(result: dict, server: _Recorder, per_request: int) -> None:
    codes = result["codes"]
    assert set(codes) == {"200", "429"}, codes
    assert codes["200"] + codes["429"] <= sum(server.sent.values())
    assert 1.5 <= codes["200"] / codes["429"] <= 2.5, codes  # the server's 2:1
    assert result["requests_per_s"] > 0
    assert result["sentences_per_s"] == result["requests_per_s"] * per_request
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    paths = {path for path, _ in server.bodies}
    assert paths == {"/embeddings"}
    inputs = {json.dumps(body["input"]) for _, body in server.bodies}
    assert len(inputs) > 8  # rotates over many bodies, not one
    for _, body in server.bodies[:20]:
        assert body["model"] == "peer-id" and body["encoding_format"] == "float"
        assert isinstance(body["input"], list) and len(body["input"]) == per_request


def test_python_generator_counts_every_status(recorder: _Recorder) -> None:
    target = Target(port=recorder.server_address[1], path="/embeddings", model="peer-id")
    result = load_test(target, concurrency=4, per_request=2, clients=1, warmup_s=0, measure_s=1)
    assert result["generator"] == "python"
    _check(result, recorder, per_request=2)


@pytest.mark.skipif(find_wrk() is None, reason="wrk not unpacked: bash bench/tools.sh")
def test_wrk_counts_every_status(recorder: _Recorder) -> None:
    target = Target(port=recorder.server_address[1], path="/embeddings", model="peer-id")
    result = wrk_load_test(target, concurrency=4, per_request=2, clients=2, warmup_s=0, measure_s=1)
    assert result["generator"] == "wrk"
    _check(result, recorder, per_request=2)


def _line(codes: str, errors: str, requests: int) -> str:
    return (
        "Running 1s test @ http://127.0.0.1:1\n  2 threads and 4 connections\n"
        f'WRK_JSON {{"requests": {requests}, "duration_us": 2000000, "p50_us": 1500, "p99_us": 9000, '
        f'"codes": {{{codes}}}, "errors": {{{errors}}}}}\n'
    )


def test_parse_wrk_output_keeps_failures_visible() -> None:
    errors = '"connect": 0, "read": 3, "write": 0, "status": 5, "timeout": 2'
    row = parse_wrk_output(_line('"200": 100, "503": 5', errors, 106), concurrency=4, per_request=32)
    assert row["codes"] == {"200": 100, "503": 5, "read_error": 3, "timeout": 2, "uncounted": 1}
    assert row["requests_per_s"] == 50 and row["sentences_per_s"] == 1600
    assert (row["p50_ms"], row["p99_ms"]) == (1.5, 9.0)


def test_parse_wrk_output_without_its_line_says_so() -> None:
    with pytest.raises(ValueError, match="no WRK_JSON line"):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n", 4, 1)
