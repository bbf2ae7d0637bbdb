"""Inference server benchmark: raw `model.encode` ceiling, then the HTTP server under load.

One command measures, on the same machine and in the same run:
  1. the in-process ceiling: `model.encode(batch_size=256)` throughput and single-call latency;
  2. the server (`canaryflow serve`, started as a subprocess) driven over loopback by load-generator
     processes (raw HTTP/1.1 keep-alive clients on asyncio), closed loop at several concurrencies,
     single-sentence requests and 32-sentence requests.
It prints a table and writes JSON (default bench/results/inference.json).

    .venv/bin/python bench/inference.py --quick            # CPU, about two minutes
    python3 bench/inference.py --device cuda --workers 8   # GPU machine (see bench/inference.md)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


def make_sentences(n: int, seed: int = 0) -> list[str]:
    """Deterministic English-like sentences of 19-23 words: about 25 tokens with [CLS]/[SEP]."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(19, 23))).capitalize() + "." for _ in range(n)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# -- 1. raw model.encode ceiling -----------------------------------------------------------------


def raw_ceiling(model_path: str, device: str, n_sentences: int, n_single: int) -> dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device=device)
    model.half() if device.startswith("cuda") else model.float()
    sentences = make_sentences(n_sentences, seed=1)
    tokens = [len(t) for t in model.tokenizer(sentences[:2000])["input_ids"]]
    model.encode(sentences[:512], batch_size=256)  # warm-up
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    model.encode(sentences, batch_size=256)
    sync()
    batch_s = time.perf_counter() - start
    latencies = []
    for text in sentences[:n_single]:
        t0 = time.perf_counter()
        model.encode([text])
        latencies.append((time.perf_counter() - t0) * 1000)
    forward = None
    if device.startswith("cuda"):
        try:
            forward = _forward_only(model, sentences[:1024], device)
        except Exception as exc:  # the ceiling is informative; the run goes on without it
            print(f"forward-only measurement failed: {exc!r}", flush=True)
    del model
    served: dict[str, Any] = {}
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        for graphs in (False, True):
            try:
                served.update(_served_forward(model_path, device, sentences[:1024], graphs))
            except Exception as exc:
                print(f"served-forward measurement (graphs={graphs}) failed: {exc!r}", flush=True)
    return {
        **served,
        "encode_batch256_sentences_per_s": n_sentences / batch_s,
        "encode_single_p50_ms": percentile(latencies, 50),
        "encode_single_p99_ms": percentile(latencies, 99),
        "forward_only_batch1024_sentences_per_s": forward,
        "mean_tokens": statistics.fmean(tokens),
    }


def _forward_only(model: Any, sentences: list[str], device: str) -> float:
    """Forward pass alone on pre-tokenized fp16 inputs: the GPU's own ceiling."""
    import torch

    features = model.tokenize(sentences)
    features = {k: v.to(device) for k, v in features.items() if hasattr(v, "to")}
    reps = 20
    with torch.inference_mode():
        for _ in range(3):
            model(features)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            model(features)
        torch.cuda.synchronize()
    return reps * len(sentences) / (time.perf_counter() - t0)


def _served_forward(model_path: str, device: str, sentences: list[str], graphs: bool) -> dict[str, float]:
    """The server's own forward path (packed tokens in, float32 rows out, copies included), eager or
    replayed from CUDA graphs: chunks of 256 sentences, and one sentence at a time."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from inference.models.sentence_transformer import SentenceTransformerModel

    model = SentenceTransformerModel(
        SentenceTransformer(model_path, device="cpu"), device=device, cuda_graphs=graphs
    )
    t0 = time.perf_counter()
    model.warm_up()
    warm_s = time.perf_counter() - t0
    tokens = model.tokenize(sentences)
    chunks = [tokens.take(np.arange(i, i + 256)) for i in range(0, len(tokens) - 255, 256)]
    singles = [tokens.take([i]) for i in range(200)]
    for chunk in chunks:
        model.embed(chunk)
    reps = 10
    t0 = time.perf_counter()
    for _ in range(reps):
        for chunk in chunks:
            model.embed(chunk)
    chunk_rate = reps * 256 * len(chunks) / (time.perf_counter() - t0)
    latencies = []
    for single in singles:
        t1 = time.perf_counter()
        model.embed(single)
        latencies.append((time.perf_counter() - t1) * 1000)
    key = "graphed" if graphs else "eager"
    return {
        f"served_{key}_chunk256_sentences_per_s": chunk_rate,
        f"served_{key}_single_p50_ms": percentile(latencies, 50),
        f"served_{key}_warm_up_s": warm_s,
    }


# -- 2. the server under load --------------------------------------------------------------------


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


ENCODING = os.environ.get("CANARYFLOW_BENCH_ENCODING", "float")  # set by --encoding-format


def _requests(port: int, per_request: int, count: int, seed: int) -> list[bytes]:
    sentences = make_sentences(count * per_request, seed=seed)
    out = []
    for i in range(count):
        texts = sentences[i * per_request : (i + 1) * per_request]
        one = texts[0] if per_request == 1 else texts
        body = json.dumps({"input": one, "model": "minilm", "encoding_format": ENCODING}).encode()
        out.append(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (port, len(body), body)
        )
    return out


async def _drive(
    port: int, conns: int, per_request: int, warmup_s: float, measure_s: float, seed: int
) -> dict:
    loop = asyncio.get_running_loop()
    raws = _requests(port, per_request, 512, seed)
    latencies: list[float] = []
    codes: dict[str, int] = {}
    t_start = time.perf_counter()
    t_measure, t_end = t_start + warmup_s, t_start + warmup_s + measure_s

    async def one(i: int) -> None:
        _, conn = await loop.create_connection(_Conn, "127.0.0.1", port)
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
                _, conn = await loop.create_connection(_Conn, "127.0.0.1", port)
        if conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(one(i) for i in range(conns)))
    return {"latencies": latencies, "codes": codes}


def _client_main(args: tuple[int, int, int, float, float, int], out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out.put(asyncio.run(_drive(*args)))


def load_test(
    port: int, concurrency: int, per_request: int, clients: int, warmup_s: float, measure_s: float
) -> dict[str, Any]:
    clients = max(1, min(clients, concurrency))
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    shares = [concurrency // clients + (1 if i < concurrency % clients else 0) for i in range(clients)]
    procs = [
        ctx.Process(target=_client_main, args=((port, c, per_request, warmup_s, measure_s, 100 + i), queue))
        for i, c in enumerate(shares)
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
    ok = codes.get("200", 0)
    return {
        "concurrency": concurrency,
        "texts_per_request": per_request,
        "requests_per_s": ok / measure_s,
        "sentences_per_s": ok * per_request / measure_s,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "codes": codes,
    }


def start_profilers(server_pid: int, seconds: float, out_dir: str, tag: str) -> list[subprocess.Popen]:
    """py-spy (sampling, non-blocking) on every server process during one load point; the
    collapsed stacks say where each process spends its time under that load."""
    import shutil

    import psutil

    spy = shutil.which("py-spy")
    if spy is None:
        print("--profile: py-spy not found on PATH; no profile taken", flush=True)
        return []
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    children = sorted(psutil.Process(server_pid).children(recursive=True), key=lambda p: p.create_time())
    options = ["--duration", str(max(1, int(seconds))), "--rate", "100", "--format", "raw"]
    options += ["--nonblocking", "--threads"]
    return [
        subprocess.Popen(
            [spy, "record", "--pid", str(child.pid), *options, "-o", f"{out_dir}/{tag}-{i:02d}.txt"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, child in enumerate(children)
    ]


def _gpu_memory_used_mib() -> int | None:
    """Device memory in use by every process (the server's contexts, weights, graph pools)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        return int(out.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, server: subprocess.Popen, timeout_s: float = 180) -> None:
    """Every worker must be ready: ask on many fresh connections (the kernel spreads them)."""
    deadline = time.monotonic() + timeout_s
    streak = 0
    while streak < 40:
        if time.monotonic() > deadline:
            raise TimeoutError("server not ready")
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as r:
                streak = streak + 1 if r.status == 200 else 0
        except OSError:
            streak = 0
            time.sleep(0.2)


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


def check_correct(port: int, model_path: str, device: str) -> float:
    """Max abs difference between the server's embeddings and the raw model's on the same texts."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    texts = make_sentences(16, seed=5)
    body = json.dumps({"input": texts, "model": "minilm"}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/embeddings", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        got = np.array([d["embedding"] for d in json.loads(r.read())["data"]])
    model = SentenceTransformer(model_path, device=device)
    model.half() if device.startswith("cuda") else model.float()
    ref = model.encode(texts)
    return float(np.abs(got - ref).max())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model dir (default: packaged all-MiniLM-L6-v2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--clients", type=int, default=1, help="load-generator processes")
    parser.add_argument("--quick", action="store_true", help="small counts for a CPU run")
    parser.add_argument("--single", default=None, help="concurrencies for 1-sentence requests, e.g. 1,64,256")
    parser.add_argument("--batch32", default=None, help="concurrencies for 32-sentence requests")
    parser.add_argument("--measure-s", type=float, default=None)
    parser.add_argument("--server-arg", action="append", default=[], help="extra `canaryflow serve` option")
    parser.add_argument("--profile", default=None, help="dir: py-spy stacks at each kind's top load")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "inference.json"))
    parser.add_argument("--encoding-format", default="float", choices=["float", "base64"])
    parser.add_argument("--ready-only", action="store_true", help="measure the start-up, then stop")
    parser.add_argument("--skip-raw", action="store_true", help="no raw model.encode ceiling")
    args = parser.parse_args()
    os.environ["CANARYFLOW_BENCH_ENCODING"] = args.encoding_format  # the spawned load generators

    if args.model is None:
        from canaryflow.adapters.model_assets import minilm_path

        args.model = str(minilm_path())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    gpu = args.device.startswith("cuda")
    single = [int(c) for c in (args.single or ("1,8,32" if args.quick else "1,64,256,512")).split(",")]
    batch32 = [int(c) for c in (args.batch32 or ("1,4,8" if args.quick else "8,32,64,128")).split(",")]
    measure_s = args.measure_s or (5.0 if args.quick else 8.0)
    warmup_s = 1.5 if args.quick else 2.0

    raw: dict[str, Any] = {}
    if not (args.ready_only or args.skip_raw):
        print(f"raw model.encode on {args.device} ...", flush=True)
        raw = raw_ceiling(args.model, args.device, 50000 if gpu else (1000 if args.quick else 4000), 200)
        print(json.dumps(raw), flush=True)

    port = free_port()
    try:  # the whole CLI where its other groups' dependencies are installed; else `serve` alone
        import canaryflow.app.cli  # noqa: F401

        launcher = [sys.executable, "-m", "canaryflow.app.cli", "serve"]
    except Exception:
        launcher = [
            sys.executable,
            "-c",
            "import typer; from canaryflow.app.commands.serve import serve; typer.run(serve)",
        ]
    cmd = [
        *launcher, "--model-uri", args.model, "--model-name", "minilm",
        "--port", str(port), "--workers", str(args.workers), "--device", args.device, *args.server_arg,
    ]  # fmt: skip
    print("server:", " ".join(cmd), flush=True)
    server = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        },
    )
    runs: list[dict[str, Any]] = []
    try:
        t0 = time.monotonic()
        wait_ready(port, server)
        ready_s = time.monotonic() - t0
        print(f"server ready in {ready_s:.1f}s", flush=True)
        gpu_memory_mib = _gpu_memory_used_mib() if gpu else None
        if args.ready_only:
            print(json.dumps({"server_ready_s": ready_s, "gpu_memory_used_mib": gpu_memory_mib}))
            return
        max_diff = check_correct(port, args.model, args.device)
        print(f"max |server - encode| = {max_diff:.2e}", flush=True)
        for per_request, levels in ((1, single), (32, batch32)):
            for c in levels:
                spies = []
                if args.profile and c == levels[-1]:
                    spies = start_profilers(server.pid, measure_s, args.profile, f"r{per_request}-c{c}")
                result = load_test(port, c, per_request, args.clients, warmup_s, measure_s)
                for spy in spies:
                    spy.wait(timeout=60)
                runs.append(result)
                print(
                    f"  {per_request:>2} texts/req  c={c:<4} {result['sentences_per_s']:>9.0f} sent/s "
                    f"{result['requests_per_s']:>8.0f} req/s  p50 {result['p50_ms']:7.2f} ms  "
                    f"p99 {result['p99_ms']:7.2f} ms  {result['codes']}",
                    flush=True,
                )
    finally:
        stop_server(server)

    report: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": args.device},
        "settings": {
            "workers": args.workers,
            "clients": args.clients,
            "measure_s": measure_s,
            "server_args": args.server_arg,
            "encoding_format": args.encoding_format,
        },
        "raw": raw,
        "server_vs_encode_max_abs_diff": max_diff,
        "server_ready_s": ready_s,
        "gpu_memory_used_mib_when_ready": gpu_memory_mib,
        "runs": runs,
    }
    if gpu:
        import torch

        report["machine"]["gpu"] = torch.cuda.get_device_name(0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    if not raw:  # --skip-raw: the per-level lines above are the result
        print(f"JSON: {args.out}")
        return
    ceiling = raw["encode_batch256_sentences_per_s"]
    print()
    print(
        "| requests | concurrency | sentences/s | requests/s | p50 ms | p99 ms | vs encode(256) | non-200 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    print(f"| raw encode(batch 256) | - | {ceiling:,.0f} | - | - | - | 1.00 | - |")
    print(
        f"| raw encode(1 sentence) | 1 | - | - | {raw['encode_single_p50_ms']:.2f} | "
        f"{raw['encode_single_p99_ms']:.2f} | - | - |"
    )
    for r in runs:
        bad = {k: v for k, v in r["codes"].items() if k != "200"}
        print(
            f"| {r['texts_per_request']} sentence(s) | {r['concurrency']} | {r['sentences_per_s']:,.0f} | "
            f"{r['requests_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['sentences_per_s'] / ceiling:.2f} | {bad or '-'} |"
        )
    print(f"\nmean tokens/sentence {raw['mean_tokens']:.1f}; server ready in {ready_s:.0f} s", end="")
    print(f"; GPU memory in use {gpu_memory_mib} MiB" if gpu_memory_mib else "", end="")
    print(f"; JSON: {args.out}")


if __name__ == "__main__":
    main()
