"""The benchmark's load generators: closed loop over loopback HTTP/1.1 keep-alive connections.

Two implementations drive the same request bodies and report the same figures (a dict with
`generator`, `requests_per_s`, `sentences_per_s`, `p50_ms`, `p99_ms` and `codes`: every answer
counted by its status, plus socket errors and timeouts, so that no failure is hidden):

- `python` (`load_test`): raw HTTP/1.1 clients on asyncio/uvloop in separate processes; each
  connection sends its next request when the last answer arrived; latency is the whole round trip
  as the client sees it.
- `wrk` (`bench.loadgen_wrk.wrk_load_test`): wrk 4.1 (C, one event loop per thread) with a Lua
  script sending the same bodies. Measured by bench/loadgen_cost.py, it costs the host about a
  fifth less CPU per request than the Python client (12 against 14-16 us here).

Bodies rotate over many different sentences (`make_sentences`), 512 requests per client.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import time
from dataclasses import dataclass
from typing import Any

_WORD_TEXT = """
the of and to in is was for on that with as by at from his her they this have had are not but one
all were we when there can an which their said if do will each about how up out them then she many
some so these would other into has more two time could no way people my than first water been call
who oil its now find long down day did get come made may part over new sound take only little work
know place year live me back give most very after thing our just name good sentence man think say
great where help through much before line right too mean old any same tell boy follow came want show
also around form three small set put end does another well large must big even such because turn
here why ask went men read need land different home us move try kind hand picture again change off
play spell air away animal house point page letter mother answer found study still learn should
america world high every near add food between own below country plant last school father keep tree
never start city earth eye light thought head under story saw left few while along might close
something seem next hard open example begin life always those
"""
WORDS = _WORD_TEXT.split()
REQUESTS_PER_CLIENT = 512


def make_sentences(n: int, seed: int = 0) -> list[str]:
    """Deterministic English-like sentences of 19-23 words: about 25 tokens with [CLS]/[SEP]."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(19, 23))).capitalize() + "." for _ in range(n)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@dataclass(frozen=True)
class Target:
    """Where the load goes and what each body says (servers differ in route and model id)."""

    port: int
    path: str = "/v1/embeddings"
    model: str = "minilm"
    encoding_format: str = "float"


def request_bodies(target: Target, per_request: int, count: int, seed: int) -> list[bytes]:
    """`count` JSON bodies of `per_request` sentences each (a bare string when it is one)."""
    sentences = make_sentences(count * per_request, seed=seed)
    out = []
    for i in range(count):
        texts = sentences[i * per_request : (i + 1) * per_request]
        one = texts[0] if per_request == 1 else texts
        body = {"input": one, "model": target.model, "encoding_format": target.encoding_format}
        out.append(json.dumps(body).encode())
    return out


def client_shares(concurrency: int, clients: int) -> list[int]:
    """Connections per load-generator process (or wrk thread): as even as possible, none empty."""
    clients = max(1, min(clients, concurrency))
    return [concurrency // clients + (1 if i < concurrency % clients else 0) for i in range(clients)]


def summarize(
    generator: str, concurrency: int, per_request: int, ok: int, seconds: float, p50: float, p99: float,
    codes: dict[str, int],
) -> dict[str, Any]:  # fmt: skip
    """One row of the table: throughput counts only 200 answers; `codes` shows everything else."""
    return {
        "generator": generator,
        "concurrency": concurrency,
        "texts_per_request": per_request,
        "requests_per_s": ok / seconds,
        "sentences_per_s": ok * per_request / seconds,
        "p50_ms": p50,
        "p99_ms": p99,
        "codes": codes,
    }


# -- the Python generator --------------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection: one request at a time, response framed by content-length."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        at = head.find(b"content-length:")
        length = (
            int(head[at + 15 : head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None])
            if at >= 0
            else 0
        )
        if len(self.buf) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buf[: end + 4 + length]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(-1)

    async def request(self, raw: bytes) -> int:
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(raw)
        return await self.waiter


def _raw_requests(target: Target, per_request: int, count: int, seed: int) -> list[bytes]:
    return [
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (target.path.encode(), target.port, len(body), body)
        for body in request_bodies(target, per_request, count, seed)
    ]


async def _drive(
    target: Target, conns: int, per_request: int, warmup_s: float, measure_s: float, seed: int
) -> dict:
    loop = asyncio.get_running_loop()
    raws = _raw_requests(target, per_request, REQUESTS_PER_CLIENT, seed)
    latencies: list[float] = []
    codes: dict[str, int] = {}
    t_start = time.perf_counter()
    t_measure, t_end = t_start + warmup_s, t_start + warmup_s + measure_s

    async def one(i: int) -> None:
        _, conn = await loop.create_connection(_Conn, "127.0.0.1", target.port)
        k = i
        while True:
            t0 = time.perf_counter()
            if t0 >= t_end:
                break
            status = await conn.request(raws[k % len(raws)])
            t1 = time.perf_counter()
            k += conns
            if t0 >= t_measure and t1 <= t_end:
                latencies.append((t1 - t0) * 1000)
                codes[str(status)] = codes.get(str(status), 0) + 1
            if status == -1:
                _, conn = await loop.create_connection(_Conn, "127.0.0.1", target.port)
        if conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(one(i) for i in range(conns)))
    return {"latencies": latencies, "codes": codes}


def _client_main(args: tuple[Target, int, int, float, float, int], out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out.put(asyncio.run(_drive(*args)))


def load_test(
    target: Target, concurrency: int, per_request: int, clients: int, warmup_s: float, measure_s: float
) -> dict[str, Any]:
    """The Python generator: `clients` processes share `concurrency` connections."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_client_main, args=((target, c, per_request, warmup_s, measure_s, 100 + i), queue))
        for i, c in enumerate(client_shares(concurrency, clients))
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=warmup_s + measure_s + 120) for _ in procs]
    for p in procs:
        p.join()
    latencies = [x for r in results for x in r["latencies"]]
    codes: dict[str, int] = {}
    for r in results:
        for code, n in r["codes"].items():
            codes[code] = codes.get(code, 0) + n
    return summarize(
        "python", concurrency, per_request, codes.get("200", 0), measure_s,
        percentile(latencies, 50), percentile(latencies, 99), codes,
    )  # fmt: skip
