"""Shadow mode (canary sees copies, caller gets baseline) and the memory-bounded model cache."""

from __future__ import annotations

import time

import numpy as np

from tests.inference.conftest import SENTENCES, routing, running_server


def _vectors(response) -> np.ndarray:
    return np.array([d["embedding"] for d in response.json()["data"]])


def test_shadow_copies_record_cosine_distance(loader, st_model, perturbed_model) -> None:
    config = routing(
        ("1", "mem://minilm", 100, "baseline"), ("2", "mem://minilm-perturbed", 0, "canary"), shadow=1.0
    )
    with running_server(config, loader) as server, server.client() as client:
        for i in range(5):
            response = client.post(
                "/v1/embeddings", json={"input": SENTENCES[2 * i : 2 * i + 2] or ["x"], "model": "minilm"}
            )
            assert response.status_code == 200
            assert response.headers["X-Model-Version"] == "1"
            np.testing.assert_allclose(
                _vectors(response), st_model.encode(SENTENCES[2 * i : 2 * i + 2] or ["x"]), atol=1e-5
            )
        labels = {"model": "minilm", "version": "2", "baseline": "1"}
        deadline = time.monotonic() + 30
        while server.metric("canaryflow_shadow_cosine_distance_count", **labels) < 9:
            assert time.monotonic() < deadline, "shadow copies not compared"
            time.sleep(0.05)
        count = server.metric("canaryflow_shadow_cosine_distance_count", **labels)
        total = server.metric("canaryflow_shadow_cosine_distance_sum", **labels)
        texts = [t for i in range(5) for t in (SENTENCES[2 * i : 2 * i + 2] or ["x"])]
        base, canary = st_model.encode(texts), perturbed_model.encode(texts)
        expected = 1 - np.sum(base * canary, axis=1)
        assert count == len(texts)
        assert abs(total - expected.sum()) < 1e-4
        assert 0 < total / count < 0.05, "a perturbed canary is close to, but not equal to, the baseline"
        assert (
            server.metric("canaryflow_shadow_requests_total", model="minilm", version="2", outcome="ok") == 5
        )
        # Shadow copies are not the canary's served requests.
        assert server.metric("canaryflow_requests_total", model="minilm", version="2", code="200") == 0


def test_lru_cache_evicts_and_reloads(loader, st_model) -> None:
    weights_mb = sum(p.numel() * p.element_size() for p in st_model.parameters()) / 2**20
    config = routing(("1", "mem://minilm", 50, "baseline"), ("2", "mem://minilm", 50, "canary"))
    # Room for one version's weights, not two: serving the other means evicting one.
    with running_server(config, loader, gpu_memory_budget_mb=weights_mb * 1.5) as server:
        m = server.metric
        with server.client() as client:
            reference = st_model.encode(SENTENCES[:3])
            assert m("canaryflow_model_evictions_total", model="minilm", version="1") == 1
            for _ in range(3):
                for version in ("1", "2"):
                    r = client.post(
                        "/v1/embeddings", json={"input": SENTENCES[:3], "model": f"minilm/{version}"}
                    )
                    assert r.status_code == 200 and r.headers["X-Model-Version"] == version
                    np.testing.assert_allclose(_vectors(r), reference, atol=1e-5)
            metrics = client.get("/metrics").text
        loads = m("canaryflow_model_loads_total", model="minilm", version="1")
        evictions = m("canaryflow_model_evictions_total", model="minilm", version="1") + m(
            "canaryflow_model_evictions_total", model="minilm", version="2"
        )
        assert loads == 4, "initial load + brought back in each of 3 rounds"
        assert evictions >= 6
        resident = [m("canaryflow_gpu_memory_bytes", model="minilm", version=v, device="cpu") for v in "12"]
        assert sorted(resident)[0] == 0 and sorted(resident)[1] > 0, "one version resident at a time"
        assert "canaryflow_model_evictions_total" in metrics
