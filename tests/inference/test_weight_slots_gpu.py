"""Weight slots on a GPU (skipped where there is none): versions of one architecture taking turns on
one device slot keep its CUDA graphs, and each answers with its own weights.

CI has no GPU; these run on the GPU machine alongside the benchmark (bench/inference.md):

    CANARYFLOW_TEST_MODEL_DIR=.assets/minilm-fp16 python3 -m pytest --noconftest -m gpu \
        tests/inference/test_weight_slots_gpu.py

Self-contained (no fixtures from conftest), as tests/inference/test_cuda_graphs.py.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from inference.cache import ModelCache
from inference.models import cuda_graphs
from inference.models.base import TokenizedBatch
from inference.models.sentence_transformer import SentenceTransformerModel
from inference.models.weight_slots import WeightSlots
from tests.support.gpu import GPU_ONLY, model_dir

pytestmark = GPU_ONLY


@pytest.fixture(scope="module")
def base() -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir()), device="cpu")


def _variant(base: Any, seed: int) -> Any:
    """The model with every weight moved by 5% of its scale: another version of one architecture."""
    out = copy.deepcopy(base)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in out.parameters():
            if param.dtype.is_floating_point and param.numel() > 1:
                noise = torch.randn(param.shape, generator=gen, dtype=param.dtype)
                param.add_(noise * param.float().std().to(param.dtype) * 5e-2)
    return out


@pytest.fixture(autouse=True)
def _no_capturer_outlives_its_test() -> Iterator[None]:
    yield
    for graphs in list(cuda_graphs._live):
        graphs.stop_capturing(timeout_s=30)


def _batch(seed: int) -> TokenizedBatch:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    lengths = rng.integers(3, 60, size=n).astype(np.int32)
    ids = rng.integers(1000, 30000, size=int(lengths.sum())).astype(np.int32)
    return TokenizedBatch(ids, lengths, None, np.zeros(n, dtype=bool))


def _served_alone(base: Any, seeds: tuple[int, ...], lanes: int, batches: list[TokenizedBatch]) -> dict:
    """Each version's rows from its own module and graphs (every bucket captured), no slots."""
    wanted = {}
    for seed in seeds:
        model = SentenceTransformerModel(_variant(base, seed), "cuda", capture_all=True, gpu_streams=lanes)
        model.warm_up()
        assert model._graphs is not None, "graphs were dropped at warm-up"
        wanted[seed] = [model.embed(b) for b in batches]
        model.to_host()
    return wanted


def _on_one_slot(base: Any, seeds: tuple[int, ...], lanes: int) -> tuple[ModelCache, WeightSlots, int]:
    """The versions in one cache whose budget holds one slot, every bucket captured on it."""
    slots = WeightSlots()
    versions = {
        seed: SentenceTransformerModel(
            _variant(base, seed), "cuda", capture_all=True, gpu_streams=lanes, slots=slots
        )
        for seed in seeds
    }
    budget = int(versions[seeds[0]].device_bytes() * 1.5)
    cache = ModelCache(budget, None, slots)
    for seed, model in versions.items():
        cache.add(str(seed), model)
        with cache.lease(str(seed)) as leased:
            leased.warm_up()  # the first captures every bucket on the slot; the others none
    return cache, slots, budget


def _holds_one_slot_only(cache: ModelCache, slots: WeightSlots, budget: int) -> bool:
    """One slot on the device and nothing beside it. The budget is sized from a version's weights
    before its graphs were captured; with every bucket captured the one slot alone outgrows it (on
    an H100, 0.5 GB of graph pools a lane for MiniLM), and serving any version takes that slot."""
    (only,) = slots.slots()
    return cache.resident_bytes() <= max(budget, only[2])


SEEDS = (1, 2, 3, 4)


@pytest.mark.parametrize("lanes", [1, 2])
def test_versions_taking_turns_on_one_slot_keep_its_graphs_and_answer_with_their_own_weights(
    base: Any, lanes: int
) -> None:
    batches = [_batch(i) for i in range(24)]
    wanted = _served_alone(base, SEEDS, lanes, batches)
    far = min(np.abs(wanted[1][0] - wanted[2][0]).max(), np.abs(wanted[3][0] - wanted[4][0]).max())
    assert far > 1e-2, "the variants must be told apart"
    cache, slots, budget = _on_one_slot(base, SEEDS, lanes)
    assert len(slots.slots()) == 1
    captured = cuda_graphs.captures_total()
    order = [int(s) for s in np.random.default_rng(0).choice(SEEDS, size=60)]
    for turn, seed in enumerate(order):  # nearly every turn brings its version back
        i = turn % len(batches)
        with cache.lease(str(seed)) as leased:
            got = leased.embed(batches[i])
        np.testing.assert_allclose(got, wanted[seed][i], atol=2e-3, err_msg=f"version {seed}, batch {i}")
    assert cuda_graphs.captures_total() == captured, "a bring-back captured graphs"
    assert len(slots.slots()) == 1 and _holds_one_slot_only(cache, slots, budget)


def test_concurrent_batches_of_versions_sharing_a_slot_get_their_own_rows(base: Any) -> None:
    """Threads leasing versions at once (each waits for room, then copies its weights in behind
    the passes queued on the slot's two lanes): every caller gets its own version's rows."""
    batches = [_batch(100 + i) for i in range(12)]
    wanted = _served_alone(base, SEEDS, 2, batches)
    cache, slots, budget = _on_one_slot(base, SEEDS, 2)
    order = [int(s) for s in np.random.default_rng(1).choice(SEEDS, size=90)]
    wrong: list[str] = []

    def client(part: int) -> None:
        for turn, seed in enumerate(order[part::3]):
            i = (turn * 7 + part) % len(batches)
            with cache.lease(str(seed)) as leased:
                got = leased.embed(batches[i])
            if not np.allclose(got, wanted[seed][i], atol=2e-3):
                wrong.append(f"version {seed}, batch {i}: off by {np.abs(got - wanted[seed][i]).max():.3g}")

    threads = [threading.Thread(target=client, args=(part,)) for part in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert wrong == []
    assert len(slots.slots()) == 1 and _holds_one_slot_only(cache, slots, budget)
