"""Every bad request gets a 4xx with a reason, overload gets 429 + Retry-After, the server stays healthy."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.inference.conftest import SENTENCES, routing, running_server

BAD = [
    (b"{not json", 400, "not valid JSON", None),
    (b"[1, 2]", 400, "JSON object", None),
    (b'{"model": "minilm"}', 400, "input", None),
    (b'{"input": "hi"}', 400, "model", None),
    (b'{"input": 5, "model": "minilm"}', 400, "input: must be a string, a list of strings", None),
    (b'{"input": ["ok", 7], "model": "minilm"}', 400, "input[1]: must be a string", None),
    # The first bad item is named, not the last.
    (b'{"input": ["ok", 7, "x", 9], "model": "minilm"}', 400, "input[1]:", None),
    (b'{"input": ["ok", "", 3], "model": "minilm"}', 400, "input[1]: must not be an empty string", None),
    (b'{"input": [], "model": "minilm"}', 400, "empty list", None),
    (b'{"input": "", "model": "minilm"}', 400, "input[0]: must not be an empty string", None),
    (b'{"input": ["a", ""], "model": "minilm"}', 400, "input[1]", None),
    (b'{"input": ["a","b","c","d","e","f","g","h","i"], "model": "minilm"}', 413, "at most 8 per request",
     "too_many_inputs"),
    (b'{"input": "' + b"x" * 2001 + b'", "model": "minilm"}', 400, "at most 2000 (max_input_chars)", None),
    (b'{"input": "hi", "model": "other-model"}', 404, "not served here", "model_not_found"),
    (b'{"input": "hi", "model": "minilm/9"}', 404, "version 9", "model_not_found"),
    (b'{"input": "hi", "model": "minilm", "encoding_format": "int8"}', 400, "encoding_format", None),
    (b'{"input": "hi", "model": "minilm", "dimensions": 0}', 400, "dimensions", None),
    (b'{"input": "hi", "model": "minilm", "dimensions": "64"}', 400, "dimensions", None),
    (b'{"input": "hi", "model": "minilm", "user": 5}', 400, "user", None),
    # Token ids: validated against the vocabulary (30522 ids), the first bad one named.
    (b'{"input": [[101, 7592, 102], [101, 99999, 30522]], "model": "minilm"}', 400,
     "input[1][1]: token id 99999 is outside the vocabulary", None),
    (b'{"input": [101, -1], "model": "minilm"}', 400, "input[1]: must be a token id", None),
    (b'{"input": [[101], [true]], "model": "minilm"}', 400, "input[1][0]: must be a token id", None),
    (b'{"input": [[101], []], "model": "minilm"}', 400, "input[1]: must not be an empty list", None),
    (b'{"input": [[101], "hi"], "model": "minilm"}', 400, "input[1]: must be a list of token ids", None),
    # Within the character limit but beyond the model's 256 tokens, with truncation switched off.
    (b'{"input": ["ok", "' + b"word " * 300 + b'"], "model": "minilm"}', 400, "input[1]: longer than the 256",
     "context_length_exceeded"),
    (b'{"input": [' + b"101," * 300 + b'102], "model": "minilm"}', 400, "input[0]: longer than the 256",
     "context_length_exceeded"),
    # Per-request token limit (max_request_tokens=400): 4 texts of ~200 tokens each.
    (b'{"input": ["' + b'","'.join([b"word " * 200] * 4) + b'"], "model": "minilm"}', 413,
     "at most 400 per request (max_request_tokens)", "too_many_tokens"),
]  # fmt: skip


@pytest.fixture(scope="module")
def strict_server(loader):
    config = routing(("1", "mem://minilm", 100, "stable"))
    with running_server(
        config, loader, max_inputs=8, max_input_chars=2000, max_request_tokens=400, truncate=False
    ) as server:
        yield server


@pytest.mark.parametrize(("body", "status", "reason", "code"), BAD, ids=[f"case{i}" for i in range(len(BAD))])
def test_bad_request_is_refused_with_reason(strict_server, body: bytes, status: int, reason: str, code):
    with strict_server.client() as client:
        response = client.post("/v1/embeddings", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert reason in error["message"], error
        assert error["type"] == "invalid_request_error"
        assert error["code"] == code
        assert client.get("/healthz").status_code == 200
        ok = client.post("/v1/embeddings", json={"input": SENTENCES[0], "model": "minilm"})
        assert ok.status_code == 200


def test_client_errors_are_not_counted_as_version_errors(strict_server) -> None:
    m = strict_server.metric
    assert m("canaryflow_requests_total", model="minilm", version="none", code="400") > 0
    assert m("canaryflow_requests_total", model="minilm", version="1", code="500") == 0


def test_overload_gets_429_with_retry_after(loader) -> None:
    config = routing(("1", "mem://minilm", 100, "stable"))
    long_texts = [("lorem ipsum dolor sit amet " * 60) + str(i) for i in range(48)]
    # Room for the 60 short texts (4 tokens each: 240) but not for 5 more (3 tokens each) behind them.
    with running_server(config, loader, max_queue_tokens=250, concurrent_batches=1, max_wait_ms=0) as server:
        outcomes: dict[str, int] = {}

        def post(name: str, texts: list[str]) -> None:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                outcomes[name] = client.post(
                    "/v1/embeddings", json={"input": texts, "model": "minilm"}
                ).status_code

        busy = threading.Thread(target=post, args=("busy", long_texts))  # occupies the only batch slot
        busy.start()
        time.sleep(0.3)
        queued = threading.Thread(target=post, args=("queued", [f"short {i}" for i in range(60)]))
        queued.start()
        time.sleep(0.3)
        with server.client() as client:
            refused = client.post(
                "/v1/embeddings", json={"input": ["one", "two", "three", "four", "five"], "model": "minilm"}
            )
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["Retry-After"]) >= 1
            error = refused.json()["error"]
            assert "max_queue_tokens" in error["message"]
            assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        busy.join()
        queued.join()
        assert outcomes == {"busy": 200, "queued": 200}
        assert server.metric("canaryflow_queue_rejections_total", model="minilm", version="1") == 1
