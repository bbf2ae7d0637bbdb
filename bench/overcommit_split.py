"""The overcommit bench's traffic (bench/overcommit.py): Zipf draws over the versions, and the same
traffic split into a hot and a cold stream on connections of their own.

In one closed loop (each wrk connection sends its next request when the last one is answered) a
connection waiting on a cold version's bring-back sends no hot request meanwhile: the hot set's
throughput then measures how the generator couples hot to cold, not what the server gives the hot
set. Split, the connections are shared out by the Zipf share of the hot versions (those that fit)
against the rest; hot connections ask only hot versions, with their Zipf weights among them, and
cold connections only the others, so a cold request's wait holds up only cold connections.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.arrival import MODEL
from bench.loadgen import make_sentences


def zipf_among(count: int, ranks: Iterable[int], s: float, seed: int) -> list[str]:
    """`count` versions drawn from `ranks`, the version of rank r with probability ∝ r^-s."""
    population = list(ranks)
    weights = [1 / (rank**s) for rank in population]
    rng = random.Random(seed)
    return [str(v) for v in rng.choices(population, weights=weights, k=count)]


def hot_share(versions: int, fit: int, s: float) -> float:
    """The Zipf probability that a request asks one of the `fit` most asked of `versions`."""
    weights = [1 / (rank**s) for rank in range(1, versions + 1)]
    return sum(weights[:fit]) / sum(weights)


def split_connections(concurrency: int, share: float) -> tuple[int, int]:
    """(hot, cold) connections adding up to `concurrency`, hot ones in proportion to `share`, at
    least one each."""
    if concurrency < 2:
        raise ValueError(f"--concurrency: split traffic needs 2 connections at least, not {concurrency}")
    hot = min(max(round(concurrency * share), 1), concurrency - 1)
    return hot, concurrency - hot


def write_bodies(path: Path, versions: list[str], texts: int) -> None:
    """One request body a line, the i-th for the i-th version of `versions`, `texts` texts each."""
    sentences = make_sentences(4096, seed=7)
    with path.open("wb") as out:
        for i, version in enumerate(versions):
            batch = [sentences[(i + j) % len(sentences)] for j in range(texts)]
            body = {"input": batch[0] if texts == 1 else batch, "model": f"{MODEL}/{version}"}
            out.write(json.dumps(body).encode() + b"\n")


@dataclass(frozen=True)
class Streams:
    """The split traffic: each stream's bodies and connections, and the Zipf share they follow."""

    hot: Path
    cold: Path
    hot_connections: int
    cold_connections: int
    zipf_hot_share: float


def split_streams(
    directory: Path, versions: int, fit: int, s: float, texts: int, concurrency: int
) -> Streams:
    """The hot stream (versions 1..fit) and the cold one (fit+1..versions), their bodies written
    under `directory`, `concurrency` connections shared out by the hot versions' Zipf share."""
    hot, cold = directory / "bodies-hot.jsonl", directory / "bodies-cold.jsonl"
    write_bodies(hot, zipf_among(4096, range(1, fit + 1), s, seed=12), texts)
    write_bodies(cold, zipf_among(4096, range(fit + 1, versions + 1), s, seed=13), texts)
    share = hot_share(versions, fit, s)
    return Streams(hot, cold, *split_connections(concurrency, share), share)
