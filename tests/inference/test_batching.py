"""Batching correctness: same embeddings as `model.encode`, each caller gets its own, in order."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import random
import threading
from contextlib import nullcontext
from typing import Any, cast

import numpy as np
import pytest

from inference.batching import BatcherConfig, DynamicBatcher, plan_chunks
from inference.models.base import TokenizedBatch
from tests.inference.conftest import SENTENCES, RunningServer


def _embeddings(body: dict) -> np.ndarray:
    return np.array([item["embedding"] for item in sorted(body["data"], key=lambda d: d["index"])])


def test_short_texts_are_not_padded_to_long_ones() -> None:
    lengths = [8] * 20 + [250] + [9] * 5
    chunks = plan_chunks(lengths, max_chunk=256, max_chunk_tokens=65536, launch_cost_tokens=64)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))
    long_chunk = next(c for c in chunks if 20 in c)
    assert long_chunk == [20], "the long text gets its own pass"
    assert all(lengths[i] < 10 for c in chunks if c != long_chunk for i in c)


def test_chunks_respect_size_and_token_caps() -> None:
    lengths = [random.Random(3).randint(5, 40) for _ in range(300)]
    chunks = plan_chunks(lengths, max_chunk=32, max_chunk_tokens=640, launch_cost_tokens=10**6)
    assert all(len(c) <= 32 for c in chunks)
    assert all(max(lengths[i] for i in c) * len(c) <= 640 for c in chunks)
    assert sorted(i for c in chunks for i in c) == list(range(300))


@pytest.mark.parametrize("seed", range(6))
def test_a_batch_is_one_chunk_exactly_when_the_planner_would_make_one(seed: int) -> None:
    """The batcher skips the planner for a batch it would not cut; both halves of the rule matter:
    wrong either way, a batch is padded past one pass's launch cost or cut needlessly."""
    rng = random.Random(seed)
    for _ in range(300):
        lengths = [rng.randint(1, rng.choice([8, 40, 300])) for _ in range(rng.randint(1, 80))]
        max_chunk, max_tokens, launch = (
            rng.choice([16, 64, 256]),
            rng.choice([512, 4096, 65536]),
            rng.choice([0, 64, 2048]),
        )
        config = BatcherConfig(max_batch_size=max_chunk, max_chunk_tokens=max_tokens)
        batcher = DynamicBatcher(
            lambda: nullcontext(cast(Any, None)), concurrent.futures.ThreadPoolExecutor(1), config
        )
        planned = plan_chunks(lengths, max_chunk, max_tokens, launch)
        one = batcher._one_chunk(len(lengths), max(lengths) * len(lengths), sum(lengths), launch)
        assert one == (len(planned) == 1), (lengths, max_chunk, max_tokens, launch)


class _FirstToken:
    """A device whose embedding of a text is its first token id, so rows can be traced to texts."""

    dimension = 1
    launch_cost_tokens = 4

    def __init__(self) -> None:
        self.passes: list[int] = []

    def embed(self, batch: TokenizedBatch) -> np.ndarray:
        self.passes.append(len(batch))
        return batch.ids[batch.starts].astype(np.float32)[:, None]


@pytest.mark.parametrize("lengths", [[5, 6, 5, 6], [5, 300, 6, 5, 200]])
def test_rows_go_back_to_their_requests_whole_or_chunked(lengths: list[int]) -> None:
    """Similar lengths: one pass over the batch as it came; mixed: chunks shortest first. Either
    way every request gets its own texts' rows, in its order."""
    model = _FirstToken()

    async def scenario() -> list[list[float]]:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            batcher = DynamicBatcher(lambda: nullcontext(cast(Any, model)), pool, BatcherConfig())
            requests = []
            for first in range(0, len(lengths), 2):
                part = lengths[first : first + 2]
                ids = np.concatenate([np.full(n, 100 + first + i, np.int32) for i, n in enumerate(part)])
                tokens = TokenizedBatch(ids, np.array(part, np.int32), None, np.zeros(len(part), bool))
                requests.append(batcher.submit(tokens))
            batcher.start()  # every request queued: one batch
            results = await asyncio.wait_for(asyncio.gather(*requests), 10)
            await batcher.stop()
        return [r.embeddings[:, 0].tolist() for r in results]

    rows = asyncio.run(scenario())
    assert [v for r in rows for v in r] == [100.0 + i for i in range(len(lengths))]
    assert model.passes == ([4] if max(lengths) < 10 else [3, 1, 1])


class _GatedDevice:
    """The batcher's side of a model whose every pass waits for `gate`: a device kept busy while
    the test queues more work behind it."""

    dimension = 2
    max_seq_length = 512
    device = "cuda"
    launch_cost_tokens = 0
    matryoshka_dims: tuple[int, ...] = ()

    def __init__(self, gate: threading.Event, pass_tokens: int | None) -> None:
        self.gate = gate
        self.pass_tokens = pass_tokens

    def embed(self, batch: TokenizedBatch) -> np.ndarray:
        assert self.gate.wait(10)
        return np.zeros((len(batch), self.dimension), dtype=np.float32)

    def tokenize(self, texts: list[str]) -> TokenizedBatch:
        raise NotImplementedError

    def tokenizer_spec(self) -> str:
        return ""

    def device_bytes(self) -> int:
        return 0

    def is_resident(self) -> bool:
        return True

    def to_serving_device(self) -> None:
        pass

    def to_host(self) -> None:
        pass

    def warm_up(self) -> None:
        pass


@pytest.mark.parametrize(("pass_tokens", "batches"), [(8, [1, 1, 2, 2]), (None, [1, 5])])
def test_a_batch_holds_at_most_one_pass(pass_tokens: int | None, batches: list[int]) -> None:
    """Texts of 4 tokens, passes of 8: with one batch on the device and 5 texts (2.5 passes) queued,
    each next batch takes one pass (2 texts) and the odd one goes alone; without cut passes (a CPU)
    the queue goes in one batch."""

    async def scenario() -> list[int]:
        gate = threading.Event()
        model = _GatedDevice(gate, pass_tokens)
        texts: list[int] = []
        config = BatcherConfig(max_wait_s=0, concurrent_batches=2, pass_tokens=model.pass_tokens)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            batcher = DynamicBatcher(
                lambda: nullcontext(model), pool, config, lambda s: texts.append(s.texts)
            )
            batcher.start()
            first = batcher.submit(TokenizedBatch.filled(1, 4, 5))  # the device is busy from here
            await asyncio.sleep(0.05)
            rest = [batcher.submit(TokenizedBatch.filled(1, 4, 5)) for _ in range(5)]
            await asyncio.sleep(0.05)
            gate.set()
            await asyncio.wait_for(asyncio.gather(first, *rest), 10)
            await batcher.stop()
        return texts

    assert sorted(asyncio.run(scenario())) == batches


def test_embeddings_match_model_encode(single_server: RunningServer, st_model) -> None:
    long_text = "word " * 400  # beyond 256 tokens: truncated exactly as encode truncates
    texts = [*SENTENCES, long_text]
    with single_server.client() as client:
        response = client.post("/v1/embeddings", json={"input": texts, "model": "minilm"})
        single = client.post("/v1/embeddings", json={"input": SENTENCES[0], "model": "minilm"})
        b64 = client.post(
            "/v1/embeddings", json={"input": SENTENCES[:2], "model": "minilm", "encoding_format": "base64"}
        )
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == "1"
    body = response.json()
    assert body["object"] == "list" and body["model"] == "minilm"
    assert body["usage"]["prompt_tokens"] > len(texts)
    reference = st_model.encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(_embeddings(body), reference, atol=1e-5)
    np.testing.assert_allclose(_embeddings(single.json())[0], reference[0], atol=1e-5)
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in b64.json()["data"]]
    np.testing.assert_allclose(np.stack(decoded), reference[:2], atol=1e-5)


def test_order_preserved_under_concurrency(single_server: RunningServer, st_model) -> None:
    rng = random.Random(11)
    words = " ".join(SENTENCES).split()
    # Distinct texts per request, varied lengths, so a mix-up between callers would show.
    requests = [
        [" ".join(rng.choices(words, k=rng.randint(2, 30))) for _ in range(rng.randint(1, 6))]
        for _ in range(48)
    ]
    flat = sorted({t for r in requests for t in r})
    reference = dict(zip(flat, st_model.encode(flat, convert_to_numpy=True), strict=True))
    batches_before = single_server.metric("canaryflow_batch_size_count", model="minilm", version="1")
    texts_before = single_server.metric("canaryflow_batch_size_sum", model="minilm", version="1")

    def call(texts: list[str]) -> tuple[list[str], np.ndarray]:
        with single_server.client() as client:
            response = client.post("/v1/embeddings", json={"input": texts, "model": "minilm"})
            assert response.status_code == 200, response.text
            return texts, _embeddings(response.json())

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(call, requests))
    for texts, got in results:
        np.testing.assert_allclose(got, np.stack([reference[t] for t in texts]), atol=1e-5)
    batches = (
        single_server.metric("canaryflow_batch_size_count", model="minilm", version="1") - batches_before
    )
    merged = single_server.metric("canaryflow_batch_size_sum", model="minilm", version="1") - texts_before
    assert merged == sum(len(r) for r in requests)
    assert batches < len(requests), "concurrent requests were merged into shared batches"
