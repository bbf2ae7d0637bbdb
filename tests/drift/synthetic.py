"""Synthetic prediction traffic for the drift tests: embeddings from a mixture of topic directions,
token counts and latencies from fixed distributions, as records or as the JSONL the server writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from canaryflow.kernel.drift_statistics import Window

DIM = 32


class Traffic:
    def __init__(self, seed: int, topics: int = 6) -> None:
        self.rng = np.random.default_rng(seed)
        self.centres = np.random.default_rng(1000).standard_normal((topics + 2, DIM)) * 1.5

    def arrays(self, n: int, *, new_topic: float = 0.0, tokens: float = 14.0, latency_ms: float = 8.0):
        topic = self.rng.integers(0, len(self.centres) - 2, n)
        topic[self.rng.random(n) < new_topic] = len(self.centres) - 1  # a topic the reference never saw
        x = self.centres[topic] + self.rng.standard_normal((n, DIM))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        tok = self.rng.poisson(tokens, n).astype(float) + 2
        lat = self.rng.lognormal(np.log(latency_ms), 0.3, n)
        return x, tok, lat

    def window(self, n: int, **shift: float) -> Window:
        return Window(*self.arrays(n, **shift))

    def write(self, path: Path, n: int, *, t0: float, t1: float, version: str = "1", model: str = "minilm",
              **shift: float) -> Path:  # fmt: skip
        x, tok, lat = self.arrays(n, **shift)
        times = np.sort(self.rng.uniform(t0, t1, n))
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            for i in range(n):
                out.write(json.dumps({"t": float(times[i]), "model": model, "version": version,
                                      "latency_ms": float(lat[i]), "tokens": int(tok[i]),
                                      "embedding": [round(float(v), 6) for v in x[i]]}) + "\n")  # fmt: skip
        return path
