"""Inference server benchmark: raw `model.encode` ceiling, then the HTTP server under load.

One command measures, on the same machine and in the same run:
  1. the in-process ceiling: `model.encode(batch_size=256)` throughput and single-call latency;
  2. the server (`canaryflow serve`, started as a subprocess) driven over loopback by a load
     generator (bench/loadgen.py: Python clients in separate processes, or wrk with
     `--load-generator wrk`), closed loop at several concurrencies, single-sentence requests and
     32-sentence requests;
  3. with `--peer infinity`, then infinity-emb on the same model, at the same points, by the same
     generator (bench/peers/infinity_server.py), in the same table.
It prints a table and writes JSON (default bench/results/inference.json).

    .venv/bin/python bench/inference.py --quick                  # CPU, about two minutes
    .venv/bin/python bench/inference.py --quick --peer infinity  # and infinity-emb beside it
    python3 bench/inference.py --device cuda --workers 8         # GPU machine (bench/inference.md)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.inference_table import print_table  # noqa: E402
from bench.loadgen import Target, load_test, make_sentences, percentile  # noqa: E402
from bench.loadgen_wrk import find_wrk, wrk_load_test  # noqa: E402
from bench.serving import free_port, gpu_memory_used_mib, start_profilers, stop_server, wait_ready  # noqa: E402
from bench.startup_marks import start_logged, summary, timeline  # noqa: E402

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


def check_correct(target: Target, model_path: str, device: str) -> float:
    """Max abs difference between the server's embeddings and the raw model's on the same texts."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    texts = make_sentences(16, seed=5)
    body = json.dumps({"input": texts, "model": target.model}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{target.port}{target.path}", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        got = np.array([d["embedding"] for d in json.loads(r.read())["data"]])
    model = SentenceTransformer(model_path, device=device)
    model.half() if device.startswith("cuda") else model.float()
    ref = model.encode(texts)
    return float(np.abs(got - ref).max())


def measure_points(
    server_name: str, target: Target, points: list[tuple[int, list[int]]], args: argparse.Namespace,
    profile_pid: int | None = None, runs: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every (texts per request, concurrency) point, each by its generator: wrk from
    `--wrk-from` connections on when `--load-generator wrk`, else the Python clients; with `both`,
    the Python clients and then wrk at each of those points, to compare the two. Rows are appended
    to `runs` as they are measured, so a caller stopped midway keeps those it has."""
    runs = [] if runs is None else runs
    for per_request, levels in points:
        for c in levels:
            generators = ["python"]
            if args.load_generator != "python" and c >= args.wrk_from:
                generators = ["wrk"] if args.load_generator == "wrk" else ["python", "wrk"]
            for generator in generators:
                spies = []
                if profile_pid is not None and args.profile and c == levels[-1]:
                    tag = f"r{per_request}-c{c}" + (f"-{generator}" if len(generators) > 1 else "")
                    spies = start_profilers(profile_pid, args.measure_s, args.profile, tag)
                run = wrk_load_test if generator == "wrk" else load_test
                cpu0 = _children_cpu_s()
                result = {
                    "server": server_name,
                    **run(target, c, per_request, args.clients, args.warmup_s, args.measure_s),
                    "generator_cpu_s": _children_cpu_s() - cpu0,  # warm-up and start-up included
                }
                for spy in spies:
                    spy.wait(timeout=60)
                runs.append(result)
                _print_run(result)
    return runs


def _children_cpu_s() -> float:
    """CPU seconds of every finished child so far: the load generator's cost on the host, since the
    server (the other child) is still running while a point is measured."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _print_run(result: dict[str, Any]) -> None:
    print(
        f"  {result['server']:<12} {result['generator']:<6} {result['texts_per_request']:>2} texts/req  "
        f"c={result['concurrency']:<4} {result['sentences_per_s']:>9.0f} sent/s "
        f"{result['requests_per_s']:>8.0f} req/s  p50 {result['p50_ms']:7.2f} ms  "
        f"p99 {result['p99_ms']:7.2f} ms  generator CPU {result['generator_cpu_s']:5.1f} s  "
        f"{result['codes']}",
        flush=True,
    )


def serve_command(args: argparse.Namespace, port: int) -> list[str]:
    try:  # the whole CLI where its other groups' dependencies are installed; else `serve` alone
        import canaryflow.app.cli  # noqa: F401

        launcher = [sys.executable, "-m", "canaryflow.app.cli", "serve"]
    except Exception:
        launcher = [
            sys.executable,
            "-c",
            "import typer; from canaryflow.app.commands.serve import serve; typer.run(serve)",
        ]
    return [
        *launcher, "--model-uri", args.model, "--model-name", "minilm",
        "--port", str(port), "--workers", str(args.workers), "--device", args.device, *args.server_arg,
    ]  # fmt: skip


def _server_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def run_peer(args: argparse.Namespace, points: list[tuple[int, list[int]]]) -> dict[str, Any]:
    """infinity-emb on the same model and device, after `canaryflow serve` has stopped."""
    from bench.peers import infinity_server as peer

    with peer.started(args.model, args.device, args.peer_batch_size) as running:
        target = Target(running.port, peer.ROUTE, running.model, args.encoding_format)
        gpu_memory_mib = gpu_memory_used_mib() if args.device.startswith("cuda") else None
        max_diff = check_correct(target, args.model, args.device)
        print(f"max |peer - encode| = {max_diff:.2e}", flush=True)
        runs = measure_points("infinity", target, points, args)
    return {
        "label": peer.label(args.device, args.peer_batch_size),
        "shim": peer.SHIM if peer.shim_needed() else None,
        "server_ready_s": running.ready_s,
        "gpu_memory_used_mib_when_ready": gpu_memory_mib,
        "server_vs_encode_max_abs_diff": max_diff,
        "runs": runs,
    }


def _levels(text: str | None, default: str) -> list[int]:
    """Concurrencies from "1,64,256"; an empty string measures no point of that kind."""
    return [int(c) for c in (default if text is None else text).split(",") if c]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model dir (default: packaged all-MiniLM-L6-v2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--clients", type=int, default=1, help="load-generator processes (wrk: threads)")
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
    parser.add_argument("--load-generator", default="python", choices=["python", "wrk", "both"])
    parser.add_argument("--wrk-from", type=int, default=2, help="wrk: concurrencies below stay on Python")
    parser.add_argument("--peer", default=None, choices=["infinity"], help="also measure this server")
    parser.add_argument("--peer-single", default=None, help="peer's 1-sentence levels (default: --single)")
    parser.add_argument("--peer-batch32", default=None, help="peer's 32-sentence levels (default: --batch32)")
    parser.add_argument("--peer-batch-size", type=int, default=128, help="infinity's --batch-size")
    args = parser.parse_args()

    if args.model is None:
        from canaryflow.adapters.model_assets import minilm_path

        args.model = str(minilm_path())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.load_generator != "python" and find_wrk() is None:
        parser.error("--load-generator wrk: wrk not found (bash bench/tools.sh unpacks it into .tools/)")
    if args.peer:
        from bench.peers import infinity_server as peer

        if not peer.installed():
            parser.error(f"--peer {args.peer}: infinity_emb is not importable ({peer.INSTALL})")
    gpu = args.device.startswith("cuda")
    single = _levels(args.single, "1,8,32" if args.quick else "1,64,256,512")
    batch32 = _levels(args.batch32, "1,4,8" if args.quick else "8,32,64,128")
    points = [(1, single), (32, batch32)]
    peer_points = [(1, _levels(args.peer_single, ",".join(map(str, single)))),
                   (32, _levels(args.peer_batch32, ",".join(map(str, batch32))))]  # fmt: skip
    args.measure_s = args.measure_s or (5.0 if args.quick else 8.0)
    args.warmup_s = 1.5 if args.quick else 2.0

    raw: dict[str, Any] = {}
    if not (args.ready_only or args.skip_raw):
        print(f"raw model.encode on {args.device} ...", flush=True)
        raw = raw_ceiling(args.model, args.device, 50000 if gpu else (1000 if args.quick else 4000), 200)
        print(json.dumps(raw), flush=True)

    port = free_port()
    cmd = serve_command(args, port)
    print("server:", " ".join(cmd), flush=True)
    t0 = time.monotonic()
    server, log_lines, started_wall = start_logged(cmd, cwd=ROOT, env=_server_env())
    runs: list[dict[str, Any]] = []
    interrupted = False
    memory_after_load: int | None = None
    try:
        wait_ready(port, server)
        ready_s = time.monotonic() - t0
        startup = timeline(log_lines, started_wall)
        print(f"server ready in {ready_s:.1f}s: {summary(startup)}", flush=True)
        gpu_memory_mib = gpu_memory_used_mib() if gpu else None
        if args.ready_only:
            print(
                json.dumps(
                    {"server_ready_s": ready_s, "gpu_memory_used_mib": gpu_memory_mib, "startup": startup}
                )
            )
            return
        target = Target(port, "/v1/embeddings", "minilm", args.encoding_format)
        max_diff = check_correct(target, args.model, args.device)
        print(f"max |server - encode| = {max_diff:.2e}", flush=True)
        try:
            measure_points("canaryflow", target, points, args, profile_pid=server.pid, runs=runs)
        except KeyboardInterrupt:  # a time limit's SIGINT: the report keeps the points measured
            if not runs:
                raise
            interrupted = True
            print(f"interrupted after {len(runs)} point(s)", flush=True)
        # What serving took: the allocator's cache and the graphs captured while the loads ran.
        memory_after_load = gpu_memory_used_mib() if gpu else None
    finally:
        stop_server(server)
    report: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": args.device},
        "settings": {
            "workers": args.workers,
            "clients": args.clients,
            "measure_s": args.measure_s,
            "server_args": args.server_arg,
            "encoding_format": args.encoding_format,
            "load_generator": args.load_generator,
            "wrk_from": args.wrk_from,
        },
        "raw": raw,
        "server_vs_encode_max_abs_diff": max_diff,
        "server_ready_s": ready_s,
        "startup": startup,
        "gpu_memory_used_mib_when_ready": gpu_memory_mib,
        "gpu_memory_used_mib_after_load": memory_after_load,
        "runs": runs,
        "interrupted": interrupted,
        "peer": None,
    }
    if gpu:
        import torch

        report["machine"]["gpu"] = torch.cuda.get_device_name(0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))  # canaryflow's, whatever the peer does
    if args.peer and not interrupted:
        try:
            report["peer"] = run_peer(args, peer_points)
        except (Exception, KeyboardInterrupt) as exc:  # a timeout's SIGINT too: the table still prints
            print(f"peer {args.peer} failed: {exc!r}", flush=True)
            report["peer"] = {"label": args.peer, "error": repr(exc), "runs": []}
        Path(args.out).write_text(json.dumps(report, indent=2))
    print()
    print_table(report)
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
