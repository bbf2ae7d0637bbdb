"""One real all-MiniLM-L6-v2 for the whole inference test session, and servers on loopback ports.

Loading the model from disk takes seconds on a small CPU; each server gets a deep copy of the one
loaded model instead (the same weights, so the same embeddings), or a perturbed copy where a test
needs a canary that differs.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import torch
import uvicorn

from canaryflow.adapters.model_assets import load_minilm, make_variant
from canaryflow.kernel.contracts.routing import RoutingConfig
from inference.http_front.assembly import create_app
from inference.metrics import ServerMetrics
from inference.models.sentence_transformer import SentenceTransformerModel
from inference.server_settings import InferenceSettings
from tests.support.net import free_port

torch.set_num_threads(2)

SENTENCES = [
    "A man is playing a guitar on the street.",
    "The new movie is awesome and everybody should see it.",
    "Hi",
    "Stocks fell sharply after the central bank raised interest rates by half a point.",
    "The cat sits outside",
    "A woman is slicing an onion in a small kitchen while the radio plays old songs.",
    "Canary releases send a small share of traffic to the new version first.",
    "ok",
]


@pytest.fixture(scope="session")
def st_model() -> Any:
    return load_minilm()


@pytest.fixture(scope="session")
def perturbed_model(st_model: Any) -> Any:
    return make_variant(st_model, "perturbed", seed=7)


@pytest.fixture(scope="session")
def loader(st_model: Any, perturbed_model: Any) -> Callable[[str], SentenceTransformerModel]:
    """URIs `mem://minilm`, `mem://minilm-perturbed` (and `-matryoshka`) name the in-memory models."""
    models = {"mem://minilm": st_model, "mem://minilm-perturbed": perturbed_model}

    def load(uri: str) -> SentenceTransformerModel:
        if uri == "mem://minilm-matryoshka":  # the same weights, declared shortenable down to 64
            return SentenceTransformerModel(copy.deepcopy(st_model), "cpu", matryoshka_dims=(64, 128, 384))
        return SentenceTransformerModel(copy.deepcopy(models[uri]), device="cpu")

    return load


@dataclass
class RunningServer:
    url: str
    metrics: ServerMetrics
    app: Any

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@contextmanager
def running_server(
    routing: RoutingConfig | None,
    loader: Callable[[str], SentenceTransformerModel] | None,
    wait_ready: bool = True,
    engine_socket: str | None = None,
    **settings: Any,
) -> Iterator[RunningServer]:
    port = free_port()
    config = InferenceSettings(host="127.0.0.1", port=port, device="cpu", **settings)
    metrics = ServerMetrics()
    app = create_app(config, routing, loader=loader, metrics=metrics, engine_socket=engine_socket)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                response = httpx.get(f"{url}/ready" if wait_ready else f"{url}/healthz", timeout=2)
                if response.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("inference server did not become ready")
            time.sleep(0.05)
        yield RunningServer(url, metrics, app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def routing(*versions: tuple[str, str, int, str], shadow: float | None = None) -> RoutingConfig:
    """routing(("1", "mem://minilm", 90, "baseline"), ...)"""
    doc: dict[str, Any] = {
        "model": "minilm",
        "versions": [{"version": v, "uri": u, "weight": w, "role": r} for v, u, w, r in versions],
    }
    if shadow is not None:
        doc["shadow"] = {"enabled": True, "sample_rate": shadow}
    return RoutingConfig.model_validate(doc)


@pytest.fixture(scope="module")
def single_server(loader: Callable[[str], SentenceTransformerModel]) -> Iterator[RunningServer]:
    with running_server(routing(("1", "mem://minilm", 100, "stable")), loader, max_wait_ms=5) as server:
        yield server
