"""Overload benchmark: what admission control does at twice the server's capacity.

One command, one machine, side by side:
  1. unloaded: one client, one request at a time -> the latency a request costs alone (p50, p99);
  2. capacity: a few closed-loop clients -> the requests/s the server completes;
  3. overload: open-loop Poisson arrivals at `--factor` x capacity (2x by default), each request on
     its own connection slot, so arrivals do not slow down when the server does (as real users).
Two servers started the same way go through it in turn: first with the queue bound lifted (every
request admitted, as before admission control; its closed-loop phase measures the capacity), then
with the queue bounded (429 + Retry-After beyond it: `--max-queue-wait-ms` at half the unloaded p50,
and `--max-queue-tokens` at four requests' tokens as the memory cap), driven at the same arrival
rate, so the table shows what the bound buys. Each server's own unloaded p99 is the reference for its ratio.
Server memory (RSS of the server process) is sampled through each run.

    .venv/bin/python bench/overload.py                # CPU, about three minutes
    .venv/bin/python bench/overload.py --per-request 32 --measure-s 30

It prints a table and writes JSON (default bench/results/overload.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import _Conn, make_sentences, percentile  # noqa: E402
from bench.serving import free_port, stop_server, wait_ready  # noqa: E402

UNBOUNDED = 10**9
SERVE = "import typer; from canaryflow.app.commands.serve import serve; typer.run(serve)"


def _raw(port: int, texts: list[str]) -> bytes:
    body = json.dumps({"input": texts, "model": "minilm"}).encode()
    return (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (port, len(body), body)
    )


def _bodies(port: int, per_request: int, count: int = 256) -> list[bytes]:
    sentences = make_sentences(count * per_request, seed=3)
    return [_raw(port, sentences[i * per_request : (i + 1) * per_request]) for i in range(count)]


class _Pool:
    """Idle keep-alive connections; an arrival takes one or opens a new one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[_Conn] = []

    async def request(self, raw: bytes) -> int:
        conn = self.idle.pop() if self.idle else None
        if conn is None or conn.transport is None or conn.transport.is_closing():
            _, conn = await asyncio.get_running_loop().create_connection(_Conn, "127.0.0.1", self.port)
        status = await conn.request(raw)
        if status != -1:
            self.idle.append(conn)
        return status


async def _closed_loop(port: int, bodies: list[bytes], conns: int, seconds: float) -> list[tuple[int, float]]:
    pool = _Pool(port)
    out: list[tuple[int, float]] = []
    end = time.perf_counter() + seconds

    async def client(k: int) -> None:
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            status = await pool.request(bodies[k % len(bodies)])
            out.append((status, (time.perf_counter() - t0) * 1000))
            k += conns

    await asyncio.gather(*(client(i) for i in range(conns)))
    return out


async def _open_loop(port: int, bodies: list[bytes], rate: float, seconds: float) -> list[tuple[int, float]]:
    pool = _Pool(port)
    out: list[tuple[int, float]] = []
    rng = random.Random(7)
    tasks: set[asyncio.Task[None]] = set()

    async def one(raw: bytes) -> None:
        t0 = time.perf_counter()
        status = await pool.request(raw)
        out.append((status, (time.perf_counter() - t0) * 1000))

    start = time.perf_counter()
    at, k = start, 0
    while at < start + seconds:
        at += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        task = asyncio.get_running_loop().create_task(one(bodies[k % len(bodies)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        k += 1
    if tasks:
        await asyncio.wait(tasks, timeout=120)
    return out


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class _MemorySampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.stop = pid, threading.Event()
        self.samples: list[float] = []

    def run(self) -> None:
        while not self.stop.wait(0.25):
            self.samples.append(_rss_mib(self.pid))


def _summary(results: list[tuple[int, float]], seconds: float) -> dict[str, Any]:
    ok = [ms for status, ms in results if status == 200]
    refused = [ms for status, ms in results if status in (429, 503)]
    codes: dict[str, int] = {}
    for status, _ in results:
        codes[str(status)] = codes.get(str(status), 0) + 1
    return {
        "sent": len(results),
        "ok_per_s": len(ok) / seconds,
        "p50_ms": percentile(ok, 50),
        "p99_ms": percentile(ok, 99),
        "refused": len(refused),
        "refused_p99_ms": percentile(refused, 99),
        "codes": codes,
    }


def _start_server(
    model: str, port: int, args: argparse.Namespace, queue_tokens: int, extra: list[str]
) -> subprocess.Popen:
    cmd = [
        sys.executable, "-c", SERVE,
        "--model-uri", model, "--model-name", "minilm", "--port", str(port), "--device", "cpu",
        "--max-queue-tokens", str(queue_tokens), "--request-timeout-s", "60", *extra, *args.server_arg,
    ]  # fmt: skip
    # One torch thread by default: on a small machine shared with other work, OpenMP threads that
    # spin-wait for each other ran a 16-sentence pass 8x slower than one thread alone.
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.torch_threads),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.Popen(cmd, cwd=ROOT, env=env)


def run_server(
    model: str, args: argparse.Namespace, queue_tokens: int, capacity: float | None, extra: list[str]
) -> dict[str, Any]:
    port = free_port()
    server = _start_server(model, port, args, queue_tokens, extra)
    try:
        wait_ready(port, server)
        bodies = _bodies(port, args.per_request)
        sampler = _MemorySampler(server.pid)
        asyncio.run(_closed_loop(port, bodies, 2, 3.0))  # warm-up
        rss_ready = _rss_mib(server.pid)
        sampler.start()
        run: dict[str, Any] = {"max_queue_tokens": queue_tokens, "extra_args": extra}
        unloaded = asyncio.run(_closed_loop(port, bodies, 1, args.measure_s))
        run["unloaded"] = _summary(unloaded, args.measure_s)
        if capacity is None:
            loaded = asyncio.run(_closed_loop(port, bodies, args.capacity_clients, args.measure_s))
            run["capacity"] = _summary(loaded, args.measure_s)
            capacity = run["capacity"]["ok_per_s"]
        rate = args.factor * capacity
        print(f"  open loop at {rate:.1f} req/s ({args.factor}x {capacity:.1f})", flush=True)
        run["overload"] = {
            "rate_per_s": rate,
            **_summary(asyncio.run(_open_loop(port, bodies, rate, args.measure_s)), args.measure_s),
        }
        time.sleep(1.0)
        sampler.stop.set()
        sampler.join()
        run["rss_mib"] = {"ready": rss_ready, "max": max(sampler.samples, default=float("nan")),
                          "after": _rss_mib(server.pid)}  # fmt: skip
        run["capacity_req_per_s"] = capacity
        run["load_average_1m"] = os.getloadavg()[0]  # other work on the machine, at the end of the run
        return run
    finally:
        stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model dir (default: packaged all-MiniLM-L6-v2)")
    parser.add_argument("--per-request", type=int, default=16, help="sentences per request")
    parser.add_argument("--factor", type=float, default=2.0, help="arrival rate / measured capacity")
    parser.add_argument("--measure-s", type=float, default=20.0)
    parser.add_argument("--capacity-clients", type=int, default=4)
    parser.add_argument("--torch-threads", type=int, default=1, help="the server's torch threads")
    parser.add_argument("--queue-requests", type=float, default=4.0, help="queue bound, in requests' tokens")
    parser.add_argument(
        "--queue-wait-fraction", type=float, default=0.5,
        help="max_queue_wait_ms as a fraction of the unloaded p50 (0: no time bound)",
    )  # fmt: skip
    parser.add_argument("--server-arg", action="append", default=[], help="extra `canaryflow serve` option")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "overload.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.model is None:
        from canaryflow.adapters.model_assets import minilm_path

        args.model = str(minilm_path())
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    sample = make_sentences(64 * args.per_request, seed=3)
    tokens_per_request = sum(len(ids) for ids in tokenizer(sample)["input_ids"]) / 64
    queue_tokens = max(1, int(args.queue_requests * tokens_per_request))
    print("server with the queue bound lifted:", flush=True)
    unbounded = run_server(args.model, args, UNBOUNDED, None, [])
    print(json.dumps(unbounded), flush=True)
    wait_ms = args.queue_wait_fraction * unbounded["unloaded"]["p50_ms"]
    extra = ["--max-queue-wait-ms", f"{wait_ms:.0f}"] if wait_ms > 0 else []
    bounded_name = f"bounded: {queue_tokens} tokens" + (f", {wait_ms:.0f} ms wait" if extra else "")
    print(f"{bounded_name} ({tokens_per_request:.0f} tokens/request)", flush=True)
    bounded = run_server(args.model, args, queue_tokens, unbounded["capacity_req_per_s"], extra)
    print(json.dumps(bounded), flush=True)
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": "cpu"},
        "settings": {
            "per_request": args.per_request,
            "factor": args.factor,
            "measure_s": args.measure_s,
            "tokens_per_request": tokens_per_request,
            "server_args": args.server_arg,
            "torch_threads": args.torch_threads,
        },
        "bounded": bounded,
        "unbounded": unbounded,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\ncapacity {unbounded['capacity_req_per_s']:.1f} req/s of {args.per_request} sentences "
          f"({args.capacity_clients} closed-loop clients); open loop at {args.factor:g}x that; "
          f"load average {unbounded['load_average_1m']:.1f} then {bounded['load_average_1m']:.1f} "
          f"on {os.cpu_count()} cores")  # fmt: skip
    print("\n| server | unloaded p50 / p99 ms | answered 200 | admitted p50 ms | admitted p99 ms "
          "| p99 / unloaded p99 | refused | refused p99 ms | RSS ready -> max -> after MiB |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for name, run in ((bounded_name, bounded), ("queue bound lifted", unbounded)):
        u, o, rss = run["unloaded"], run["overload"], run["rss_mib"]
        ratio, refused = o["p99_ms"] / u["p99_ms"], f"{o['refused']} of {o['sent']}"
        ok = o["codes"].get("200", 0)
        print(f"| {name} | {u['p50_ms']:.0f} / {u['p99_ms']:.0f} | {ok} | {o['p50_ms']:.0f} | "
              f"{o['p99_ms']:.0f} | {ratio:.2f} | {refused} | {o['refused_p99_ms']:.0f} | "
              f"{rss['ready']:.0f} -> {rss['max']:.0f} -> {rss['after']:.0f} |")  # fmt: skip
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
