"""Fuzzing the embeddings API: any JSON body (and some that are not JSON) gets a 200 with one vector
per input, or a 4xx in the OpenAI error shape naming what is wrong, never a 5xx; the server stays up.

Bodies are drawn around the real request's shape (input as strings, token ids, nested lists, odd
scalars; model, dimensions, encoding_format, user) so most reach the validation past the JSON parse.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.inference.conftest import RunningServer, routing, running_server

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=0, max_value=31000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
inputs = st.one_of(
    st.text(max_size=60),
    st.lists(st.text(max_size=30), max_size=10),
    st.lists(st.integers(min_value=-5, max_value=31000), max_size=12),
    st.lists(st.lists(st.integers(min_value=-5, max_value=31000), max_size=6), max_size=4),
    st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=8),
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "input": inputs,
        "model": st.sampled_from(["minilm", "minilm/1", "minilm/9", "other", "", "MINILM"]) | scalars,
        "dimensions": st.sampled_from([384, 128, 0, -1, 385]) | scalars,
        "encoding_format": st.sampled_from(["float", "base64", "int8"]) | scalars,
        "user": st.text(max_size=10) | scalars,
    },
)


@pytest.fixture(scope="module")
def server(loader: Any) -> Iterator[RunningServer]:
    with running_server(routing(("1", "mem://minilm", 100, "stable")), loader, max_wait_ms=2) as running:
        yield running


def _check(response: httpx.Response, body: Any) -> None:
    assert response.status_code < 500, (body, response.status_code, response.text[:300])
    doc = response.json()
    if response.status_code == 200:
        assert isinstance(body, dict)
        count = 1 if isinstance(body["input"], str) or _token_list(body["input"]) else len(body["input"])
        assert len(doc["data"]) == count
        return
    error = doc["error"]
    assert set(error) >= {"message", "type", "param", "code"}, doc
    assert error["type"] == "invalid_request_error" or response.status_code in (404, 413, 429), doc
    assert error["message"].strip(), doc


def _token_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(type(v) is int for v in value)


@FUZZ
@given(body=bodies)
def test_any_request_shape_gets_a_result_or_an_openai_error(
    server: RunningServer, body: dict[str, Any]
) -> None:
    with server.client() as client:
        _check(client.post("/v1/embeddings", json=body), body)


@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_get_a_4xx_or_a_result(server: RunningServer, raw: bytes) -> None:
    with server.client() as client:
        response = client.post("/v1/embeddings", content=raw, headers={"Content-Type": "application/json"})
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        assert 400 <= response.status_code < 500, (raw, response.text[:200])
        assert "error" in response.json()
        return
    _check(response, body)


HOSTILE = [b"9" * 5000, b"NaN", b"-Infinity", b"1e999", str(2**64 + 1).encode(), b'"\\ud800"', b'"caf\xe9"']
ROUTES = [("POST", "/v1/embeddings"), ("GET", "/v1/models"), ("GET", "/v1/models/minilm"),
          ("GET", "/healthz"), ("GET", "/ready"), ("GET", "/metrics")]  # fmt: skip


@FUZZ
@given(
    route=st.sampled_from(ROUTES),
    fragment=st.sampled_from(HOSTILE),
    field=st.sampled_from(["input", "dimensions", "model", "encoding_format", "user"]),
    depth=st.integers(min_value=0, max_value=3000),
    suffix=st.text(max_size=20),
)
def test_every_route_answers_hostile_bytes_with_a_4xx_or_a_result(
    server: RunningServer, route: tuple[str, str], fragment: bytes, field: str, depth: int, suffix: str
) -> None:
    """Integers past Python's digit limit, NaN, nesting, bytes that are not UTF-8, on every route."""
    inner = b"[" * depth + fragment + b"]" * depth
    raw = b'{"model": "minilm", "input": "a", "%s": %s}' % (field.encode(), inner)
    method, path = route
    with server.client() as client:
        target = path + (quote(suffix) if method == "GET" and "models/" in path else "")
        response = client.request(method, target, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code < 500, (route, raw[:80], response.text[:200])
    if method == "POST" and response.status_code != 200:
        message = response.json()["error"]["message"]
        assert message.strip() and "\n" not in message


def test_the_server_is_healthy_after_the_fuzz(server: RunningServer) -> None:
    with server.client() as client:
        assert client.get("/healthz").status_code == 200
        ok = client.post("/v1/embeddings", json={"input": "still serving", "model": "minilm"})
    assert ok.status_code == 200 and len(ok.json()["data"][0]["embedding"]) == 384
