"""CUDA-graph forward passes against eager ones, on a GPU (skipped where there is none).

CI has no GPU; these run on the GPU machine alongside the benchmark (bench/inference.md):

    CANARYFLOW_TEST_MODEL_DIR=.assets/minilm-fp16 python3 -m pytest --noconftest -m gpu tests/inference

Self-contained (no fixtures from conftest), so they run where only torch, sentence-transformers and
this package are installed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from inference.models import cuda_graphs
from inference.models.base import TokenizedBatch
from inference.models.cuda_graphs import plan_replays
from inference.models.sentence_transformer import SentenceTransformerModel
from tests.support.gpu import GPU_ONLY, model_dir

pytestmark = GPU_ONLY


def _load(cuda_graphs: bool, gpu_streams: int = 1) -> SentenceTransformerModel:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformerModel(
        SentenceTransformer(str(model_dir()), device="cpu"), device="cuda", cuda_graphs=cuda_graphs,
        gpu_streams=gpu_streams,
    )  # fmt: skip
    model.warm_up()
    return model


@pytest.fixture(autouse=True)
def _no_capturer_outlives_its_test() -> Iterator[None]:
    """Every model a test loads captures its other buckets in the background, on the one device
    lock all models share: left running, they slow the next tests' captures (a test that waits
    for its own background captures waited behind a dozen other models')."""
    yield
    for graphs in list(cuda_graphs._live):
        graphs.stop_capturing(timeout_s=30)


@pytest.fixture(scope="module")
def graphed() -> SentenceTransformerModel:
    model = _load(cuda_graphs=True)
    assert model._graphs is not None, "graphs were dropped at warm-up: they disagreed with eager passes"
    model._graphs.capture_all()  # every bucket replayed from a graph (not the eager stand-in)
    return model


@pytest.fixture(scope="module")
def eager() -> SentenceTransformerModel:
    return _load(cuda_graphs=False)


def _random_batch(rng: np.random.Generator, n: int, low: int, high: int) -> TokenizedBatch:
    lengths = rng.integers(low, high + 1, size=n).astype(np.int32)
    ids = rng.integers(1000, 30000, size=int(lengths.sum())).astype(np.int32)
    return TokenizedBatch(ids, lengths, None, np.zeros(n, dtype=bool))


@pytest.mark.parametrize(
    ("n", "low", "high"),
    [(1, 3, 3), (5, 10, 16), (37, 3, 40), (256, 20, 30), (300, 2, 60), (9, 200, 256), (700, 5, 12)],
)
def test_graphed_equals_eager(
    graphed: SentenceTransformerModel, eager: SentenceTransformerModel, n: int, low: int, high: int
) -> None:
    batch = _random_batch(np.random.default_rng(n * 1000 + high), n, low, high)
    got, want = graphed.embed(batch), eager.embed(batch)
    assert got.shape == want.shape == (n, graphed.dimension)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=2e-3)
    # Each row alone (another bucket) gives the same vector: no leakage between rows of a bucket.
    np.testing.assert_allclose(graphed.embed(batch.take([n - 1]))[0], got[n - 1], atol=2e-3)


def test_concurrent_callers_get_their_own_rows(
    graphed: SentenceTransformerModel, eager: SentenceTransformerModel
) -> None:
    batches = [_random_batch(np.random.default_rng(i), 3 + 7 * i, 5, 50) for i in range(8)]
    wanted = [eager.embed(b) for b in batches]
    got: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(20):
            got[i] = graphed.embed(batches[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, want in enumerate(wanted):
        np.testing.assert_allclose(got[i], want, atol=2e-3)


def test_lanes_of_a_replica_one_on_the_current_stream(eager: SentenceTransformerModel) -> None:
    """The default (a replica): one lane on the device's current stream, each pass awaited under
    the device lock, the path the replicas were measured on."""
    model = _load(cuda_graphs=True)
    graphs = model._graphs
    assert graphs is not None and graphs.lanes == 1 and not graphs._queue_only
    assert graphs._lanes[0].stream == torch.cuda.current_stream()
    batch = _random_batch(np.random.default_rng(7), 9, 5, 40)
    np.testing.assert_allclose(model.embed(batch), eager.embed(batch), atol=2e-3)


def test_passes_on_two_lanes_at_once_get_their_own_rows(eager: SentenceTransformerModel) -> None:
    """Two streams, each with its own graphs and input buffer, many threads queuing passes on them
    without waiting for the last one: every caller gets the eager pass's rows for its own texts."""
    model = _load(cuda_graphs=True, gpu_streams=2)
    graphs = model._graphs
    assert graphs is not None and graphs.lanes == 2
    batches = [_random_batch(np.random.default_rng(100 + i), 1 + 9 * i, 5, 40) for i in range(12)]
    for batch in batches:  # every bucket these hit, on both lanes: replays, not the eager stand-in
        for bucket, _ in plan_replays(batch.lengths, graphs.widths, graphs.max_tokens):
            graphs.capture(bucket)
    wanted = [eager.embed(b) for b in batches]
    wrong: list[int] = []

    def work(i: int) -> None:
        for _ in range(30):
            if not np.allclose(model.embed(batches[i]), wanted[i], atol=2e-3):
                wrong.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, f"callers got rows that are not their own: {sorted(set(wrong))}"


def test_graphs_survive_eviction_and_reload(
    graphed: SentenceTransformerModel, eager: SentenceTransformerModel
) -> None:
    batch = _random_batch(np.random.default_rng(5), 40, 8, 30)
    want = eager.embed(batch)
    graphed.to_host()
    assert not graphed.is_resident()
    graphed.to_serving_device()
    np.testing.assert_allclose(graphed.embed(batch), want, atol=2e-3)


def test_the_graph_pool_counts_in_what_residency_costs() -> None:
    """The cache's budget sees the graphs' pool: it grows with captures and goes with the graphs."""
    model = _load(cuda_graphs=True)
    graphs = model._graphs
    assert graphs is not None
    weights = sum(p.numel() * p.element_size() for p in model._model.parameters())
    assert graphs.pool_bytes > 0
    assert model.device_bytes() >= weights + graphs.pool_bytes
    model.to_host()
    assert graphs.pool_bytes == 0
    model.to_serving_device()
    assert model.device_bytes() < weights + (1 << 20)


def test_a_bucket_without_a_graph_is_served_eagerly_and_captured_in_the_background(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cuda_graphs, "GPU_BOUND_RATIO", float("inf"))  # launching always worth saving
    model = _load(cuda_graphs=True)
    graphs = model._graphs
    assert graphs is not None
    rng = np.random.default_rng(3)
    batch = _random_batch(rng, 150, 100, 120)  # rows 192 x width 128: not captured before ready
    bucket = next(b for b, _ in plan_replays(batch.lengths, graphs.widths, graphs.max_tokens))
    first = model.embed(batch)
    deadline = time.monotonic() + 60
    while not graphs.captured(bucket) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert graphs.captured(bucket), "the background capturer never captured the bucket traffic asked for"
    np.testing.assert_allclose(model.embed(batch), first, atol=1e-2)
    np.testing.assert_allclose(first, model._eager(batch), atol=1e-2)


def test_a_bucket_whose_pass_is_gpu_bound_stays_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass the device is busy with longer than its launch takes gains nothing from a graph: its
    bucket is served eagerly for good, never captured, in the background or otherwise."""
    monkeypatch.setattr(cuda_graphs, "GPU_BOUND_RATIO", 0.0)  # every measured pass counts as GPU-bound
    model = _load(cuda_graphs=True)
    graphs = model._graphs
    assert graphs is not None
    graphs.stop_capturing(timeout_s=30)  # only what traffic asks for from here
    batch = _random_batch(np.random.default_rng(5), 150, 100, 120)  # 192 x 128: not captured before ready
    bucket = next(b for b, _ in plan_replays(batch.lengths, graphs.widths, graphs.max_tokens))
    first = model.embed(batch)
    assert bucket in graphs._eager and bucket not in graphs._wanted
    time.sleep(0.5)
    assert not graphs.captured(bucket)
    np.testing.assert_allclose(model.embed(batch), first, atol=1e-2)
    np.testing.assert_allclose(first, model._eager(batch), atol=1e-2)


def test_requests_go_before_background_captures() -> None:
    model = _load(cuda_graphs=True)  # the common buckets now, every other one in the background
    graphs = model._graphs
    assert graphs is not None
    batch = _random_batch(np.random.default_rng(4), 1, 10, 20)  # a bucket captured before ready
    took = []
    for _ in range(50):
        started = time.perf_counter()
        model.embed(batch)
        took.append(time.perf_counter() - started)
    assert graphs.captured_count() < len(graphs.buckets()), "captures ended before the requests: no contest"
    assert float(np.median(took)) < 0.01, f"one-sentence passes waited behind captures: {sorted(took)}"
    deadline = time.monotonic() + 60  # idle again: the rest is captured
    while graphs.captured_count() < len(graphs.buckets()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert graphs.captured_count() == len(graphs.buckets())
    assert graphs._capturer is not None
    graphs._capturer.join(30)
    assert _releasable() < CACHE_LEFT, "the capturer left the eager passes' cache on the device"


# What emptying the allocator's cache may still give back once every graph is captured (the cache
# was handed back then), against hundreds of MiB per stream an eager pass or a warm-up ran on.
CACHE_LEFT = 16 << 20


def _releasable() -> int:
    """Bytes `torch.cuda.empty_cache` gives back now: cached segments without a tensor in them."""
    reserved = torch.cuda.memory_reserved()
    torch.cuda.empty_cache()
    return reserved - torch.cuda.memory_reserved()


def _cache_streams() -> set[int]:
    """The streams the allocator's general pool (graph pools aside) holds segments for."""
    return {s["stream"] for s in torch.cuda.memory_snapshot() if tuple(s["segment_pool_id"]) == (0, 0)}


def test_captures_leave_no_cache_behind() -> None:
    """A capture's warm-up passes run on its lane's capture stream (the allocator caches per
    stream: a new stream per capture left a warm-up's activations cached on each), and once every
    bucket has its graph the cache goes back to the device."""
    model = _load(cuda_graphs=True, gpu_streams=2)
    graphs = model._graphs
    assert graphs is not None
    graphs.stop_capturing(timeout_s=30)
    torch.cuda.empty_cache()
    before = _cache_streams()
    for bucket in graphs.buckets()[:16]:  # the largest, whose warm-ups leave the most behind
        graphs.capture(bucket)
    lanes = {lane.capture_stream.cuda_stream for lane in graphs._lanes}
    assert _cache_streams() - before <= lanes, "warm-ups left memory cached on other streams"
    graphs.capture_all()
    released = _releasable()
    assert released < CACHE_LEFT, f"{released >> 20} MiB still cached after every bucket was captured"
