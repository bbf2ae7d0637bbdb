"""Versions of one architecture sharing weight slots under the overcommit cache (on the CPU: a slot is
a copy of the module in host memory, the copies plain copies; the same bindings a GPU runs).

Each version is a small BERT with its own seeded weights, so a pass on another version's weights
would show; every answer must equal, bit for bit, the same version served alone without slots.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from canaryflow.adapters.model_assets import minilm_path
from inference.cache import ModelCache
from inference.models.base import TokenizedBatch
from inference.models.plain_chain import PlainChain
from inference.models.sentence_transformer import SentenceTransformerModel
from inference.models.weight_slots import WeightSlots, slot_signature
from tests.inference.conftest import SENTENCES, routing, running_server


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(minilm_path()))


@pytest.fixture(scope="module")
def chain(tokenizer) -> Callable[..., PlainChain]:
    def make(seed: int, act: str = "gelu", pooling: str = "mean") -> PlainChain:
        torch.manual_seed(seed)
        config = BertConfig(
            vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64, hidden_act=act,
        )  # fmt: skip
        return PlainChain(BertModel(config, add_pooling_layer=False), tokenizer, pooling, True, 64)

    return make


def _batch(model: SentenceTransformerModel, seed: int) -> TokenizedBatch:
    rng = random.Random(seed)
    return model.tokenize([rng.choice(SENTENCES) for _ in range(rng.randint(1, 6))])


def _versions(chain, count: int, slots: WeightSlots) -> dict[str, SentenceTransformerModel]:
    return {str(i): SentenceTransformerModel(chain(seed=100 + i), "cpu", slots=slots) for i in range(count)}


def _alone(chain, version: str) -> SentenceTransformerModel:
    return SentenceTransformerModel(chain(seed=100 + int(version)), "cpu")


def test_versions_taking_turns_on_one_slot_answer_their_own_embeddings(chain) -> None:
    slots = WeightSlots()
    models = _versions(chain, 4, slots)
    alone = {v: _alone(chain, v) for v in models}
    slot_bytes = models["0"].device_bytes()
    events: list[tuple[str, str]] = []
    cache = ModelCache(int(slot_bytes * 1.5), lambda v, e: events.append((v, e)), slots)
    for version, model in models.items():
        cache.add(version, model)
    assert len(slots.slots()) == 1, "four versions of one architecture, room for one slot"
    rng = random.Random(0)
    for turn in range(40):
        version = rng.choice(list(models))
        batch = _batch(alone[version], turn)
        with cache.lease(version) as leased:
            got = leased.embed(batch)
        np.testing.assert_array_equal(got, alone[version].embed(batch))
        assert len(slots.slots()) == 1 and cache.resident_bytes() <= int(slot_bytes * 1.5)
        assert [cache.is_resident(v) for v in models].count(True) == 1
    assert events.count(("0", "evict")) >= 1 and sum(e == "load" for _, e in events) > 10


def test_concurrent_batches_on_shared_slots_stay_within_budget_but_for_versions_in_use(chain) -> None:
    slots = WeightSlots()
    models = _versions(chain, 6, slots)
    alone = {v: _alone(chain, v) for v in models}
    fit = 2
    budget = int(models["0"].device_bytes() * (fit + 0.5))
    cache = ModelCache(budget, None, slots)
    for version, model in models.items():
        cache.add(version, model)
    guard = threading.Lock()
    in_flight = [0]
    problems: list[str] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        for turn in range(25):
            version = rng.choice(list(models))
            batch = _batch(alone[version], seed * 100 + turn)
            with guard:
                in_flight[0] += 1
            try:
                with cache.lease(version) as model:
                    got = model.embed(batch)
                    with guard:
                        held = len(slots.slots())
                        if held > max(fit, in_flight[0]):
                            problems.append(f"{held} slots with {in_flight[0]} batches in flight")
                if not np.array_equal(got, alone[version].embed(batch)):
                    problems.append(f"version {version}: another version's embeddings")
            finally:
                with guard:
                    in_flight[0] -= 1

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert problems == []
    assert cache.resident_bytes() <= budget, "the budget holds again once no batch runs"
    assert len(slots.slots()) <= fit


def test_an_idle_slot_goes_to_the_next_version_of_its_architecture_or_is_freed_for_another(chain) -> None:
    slots = WeightSlots()
    first = SentenceTransformerModel(chain(seed=1), "cpu", slots=slots)
    budget = int(first.device_bytes() * 1.5)
    cache = ModelCache(budget, None, slots)
    cache.add("1", first)
    cache.remove("1")  # retired: its slot stays on the device, idle, counted in the budget
    ((signature, owner, held),) = slots.slots()
    assert owner is None and cache.resident_bytes() == held
    second = SentenceTransformerModel(chain(seed=2), "cpu", slots=slots)
    cache.add("2", second)  # a canary of the same architecture arrives: no new slot
    assert [(s, o) for s, o, _ in slots.slots()] == [(signature, second)]
    other = SentenceTransformerModel(chain(seed=3, act="relu"), "cpu", slots=slots)
    cache.add("3", other)  # another architecture: "2" moves out and its idle slot is freed for room
    assert [o for _, o, _ in slots.slots()] == [other] and not cache.is_resident("2")
    assert cache.resident_bytes() <= budget
    batch = _batch(other, 0)
    with cache.lease("2") as model:  # and back: the relu slot freed, a gelu one made again
        alone = SentenceTransformerModel(chain(seed=2), "cpu")
        np.testing.assert_array_equal(model.embed(batch), alone.embed(batch))
    assert [o for _, o, _ in slots.slots()] == [second] and cache.resident_bytes() <= budget


def test_what_the_budget_counts_is_reported_at_each_scrape(chain) -> None:
    from inference.metrics import ServerMetrics

    slots = WeightSlots()
    first = SentenceTransformerModel(chain(seed=1), "cpu", slots=slots)
    cache = ModelCache(int(first.device_bytes() * 2.5), None, slots)
    metrics = ServerMetrics()
    metrics.watch_cache(cache)

    def reported() -> tuple[float | None, ...]:
        read = metrics.registry.get_sample_value
        return (
            read("canaryflow_cache_resident_versions"),
            read("canaryflow_cache_device_bytes", {"holder": "versions"}),
            read("canaryflow_cache_device_bytes", {"holder": "idle_slots"}),
        )

    cache.add("1", first)
    ((_, _, held),) = slots.slots()
    assert reported() == (1, held, 0)
    cache.add("2", SentenceTransformerModel(chain(seed=2), "cpu", slots=slots))
    assert reported() == (2, 2 * held, 0)
    cache.remove("1")  # retired: its slot stays on the device, idle, in the budget but no version's
    assert reported() == (1, held, held)
    assert b'canaryflow_cache_device_bytes{holder="idle_slots"}' in metrics.exposition()


def test_the_signature_tells_architectures_apart_not_weights(chain) -> None:
    def signature(model: PlainChain) -> object:
        return slot_signature(model, 64)

    assert signature(chain(seed=1)) == signature(chain(seed=2))
    assert signature(chain(seed=1)) != signature(chain(seed=1, act="relu"))
    assert signature(chain(seed=1)) != signature(chain(seed=1, pooling="cls"))
    assert slot_signature(chain(seed=1), 64) != slot_signature(chain(seed=1), 128)


def test_a_count_of_resident_versions_holds_as_many_slots_whatever_their_architectures(chain) -> None:
    slots = WeightSlots()
    gelu = {f"g{i}": SentenceTransformerModel(chain(seed=10 + i), "cpu", slots=slots) for i in range(2)}
    relu = {
        f"r{i}": SentenceTransformerModel(chain(seed=20 + i, act="relu"), "cpu", slots=slots)
        for i in range(2)
    }
    models = {**gelu, **relu}
    alone = {
        **{v: SentenceTransformerModel(chain(seed=10 + i), "cpu") for i, v in enumerate(gelu)},
        **{v: SentenceTransformerModel(chain(seed=20 + i, act="relu"), "cpu") for i, v in enumerate(relu)},
    }
    cache = ModelCache(None, None, slots, max_resident=2)  # no budget in bytes: the count alone
    for version, model in models.items():
        cache.add(version, model)
    rng = random.Random(1)
    for turn in range(30):
        version = rng.choice(list(models))
        batch = _batch(alone[version], turn)
        with cache.lease(version) as leased:
            np.testing.assert_array_equal(leased.embed(batch), alone[version].embed(batch))
        assert cache.resident_count() == 2 and cache.is_resident(version)
        assert len(slots.slots()) <= 2, "an idle slot of the other architecture kept beyond the count"


@pytest.mark.parametrize("limit", ["gpu_memory_budget_mb", "max_resident_versions"])
def test_a_server_under_a_budget_serves_each_version_its_own_weights(
    loader, st_model, perturbed_model, limit
) -> None:
    weights_mb = sum(p.numel() * p.element_size() for p in st_model.parameters()) / 2**20
    config = routing(("1", "mem://minilm", 50, "baseline"), ("2", "mem://minilm-perturbed", 50, "canary"))
    expected = {"1": st_model.encode(SENTENCES[:3]), "2": perturbed_model.encode(SENTENCES[:3])}
    room = {"gpu_memory_budget_mb": weights_mb * 1.5} if limit == "gpu_memory_budget_mb" else {limit: 1}
    with running_server(config, loader, **room) as server:
        with server.client() as client:
            for _ in range(3):
                for version in ("1", "2"):
                    r = client.post(
                        "/v1/embeddings", json={"input": SENTENCES[:3], "model": f"minilm/{version}"}
                    )
                    assert r.status_code == 200
                    got = np.array([d["embedding"] for d in r.json()["data"]])
                    np.testing.assert_allclose(got, expected[version], atol=1e-5)
                    other = expected["2" if version == "1" else "1"]
                    assert np.abs(got - other).max() > 1e-4, "the variants must be told apart"
        assert server.metric("canaryflow_model_loads_total", model="minilm", version="2") == 4
        # What the budget counts, read at the scrape: one version on its slot, no idle slot.
        assert server.metric("canaryflow_cache_resident_versions") == 1
        held = server.metric("canaryflow_cache_device_bytes", holder="versions")
        assert weights_mb * 2**20 <= held < weights_mb * 1.5 * 2**20
        assert server.metric("canaryflow_cache_device_bytes", holder="idle_slots") == 0


def test_the_graphs_a_process_captured_are_counted_at_each_scrape(monkeypatch) -> None:
    from inference.metrics import ServerMetrics
    from inference.models import cuda_graphs

    metrics = ServerMetrics()
    monkeypatch.setattr(cuda_graphs, "_captures", 7)
    assert metrics.registry.get_sample_value("canaryflow_graph_captures_total") == 7
    monkeypatch.setattr(cuda_graphs, "_captures", 9)
    assert b"canaryflow_graph_captures_total 9.0" in metrics.exposition()
