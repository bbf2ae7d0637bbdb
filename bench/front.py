"""The serving front's host cost per request, with a forward pass that costs nothing.

On a GPU the host cores, not the device, cap the server (bench/inference.md): parsing HTTP,
tokenizing, batching, encoding JSON. This runs the real `inference.http_front` (one process, uvicorn with
httptools and uvloop, the real tokenizer) over a model whose forward pass returns zeros at once,
so what is measured is everything but the GPU. Two servers, one after the other in the same run:
the ASCII WordPiece fast path on (the default) and off (the Rust tokenizer for every text). Each
row gives the requests/s one server process reached, its p50/p99, and the server process's CPU
time per request (from /proc; load-generator processes excluded).

    .venv/bin/python bench/front.py                         # 1 and 32 sentences, ~1 minute
    .venv/bin/python bench/front.py --measure-s 10 --out bench/results/front.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import Target, load_test  # noqa: E402
from bench.serving import free_port, stop_server, wait_ready  # noqa: E402


def serve(port: int, fast_path: bool) -> None:
    """The child: the real app over a zero-cost forward pass."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import uvicorn

    from canaryflow.adapters.model_assets import minilm_path
    from canaryflow.kernel.contracts.routing import RoutingConfig
    from inference.http_front.assembly import create_app
    from inference.models.base import TokenizedBatch
    from inference.models.loader import load_model
    from inference.server_settings import InferenceSettings
    from inference.wordpiece import AsciiWordPiece

    if not fast_path:  # every tokenizer this process builds then finds no fast path: all Rust
        AsciiWordPiece.from_spec = staticmethod(lambda spec: None)  # type: ignore[method-assign]
    real = load_model(str(minilm_path()), "cpu", "float32", None, False)

    class FreeForward:
        """The real model's attributes and tokenizer; embeddings are zeros, at no cost."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def embed(self, batch: TokenizedBatch) -> np.ndarray:
            return np.zeros((len(batch), real.dimension), dtype=np.float32)

        def warm_up(self) -> None:
            pass

    model = FreeForward()
    routing = RoutingConfig.model_validate(
        {"model": "minilm", "versions": [{"version": "1", "uri": "free", "weight": 100}]}
    )
    app = create_app(InferenceSettings(port=port, device="cpu"), routing, loader=lambda _: model)
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning",
                loop="uvloop", http="httptools", proxy_headers=False)  # fmt: skip


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(fast_path: bool, points: list[tuple[int, int]], measure_s: float) -> list[dict[str, Any]]:
    port = free_port()
    cmd = [sys.executable, __file__, "--serve", str(port), "--mode", "fast" if fast_path else "rust"]
    server = subprocess.Popen(cmd, cwd=ROOT)
    rows = []
    try:
        wait_ready(port, server, streak_needed=3)
        for per_request, concurrency in points:
            load_test(Target(port), concurrency, per_request, 1, 0.0, 1.0)  # warm the word cache
            before, t0 = cpu_seconds(server.pid), time.perf_counter()
            row = load_test(Target(port), concurrency, per_request, 1, 0.5, measure_s)
            spent, wall = cpu_seconds(server.pid) - before, time.perf_counter() - t0
            served = row["requests_per_s"] * measure_s
            row["server_cpu_us_per_request"] = 1e6 * spent / max(served, 1) * (measure_s / wall)
            row["tokenizer"] = "fast path" if fast_path else "rust"
            rows.append(row)
    finally:
        stop_server(server)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["fast", "rust"], default="fast", help=argparse.SUPPRESS)
    parser.add_argument("--measure-s", type=float, default=6.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "front.json"))
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.mode == "fast")
        return
    points = [(1, 64), (32, 16)]
    rows = [row for fast in (True, False) for row in measure(fast, points, args.measure_s)]
    print("| tokenizer | texts/request | concurrency | requests/s | sentences/s | p50 ms | p99 ms "
          "| server CPU µs/request | non-200 |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        bad = {k: v for k, v in r["codes"].items() if k != "200"} or "-"
        cells = [r["tokenizer"], r["texts_per_request"], r["concurrency"], f"{r['requests_per_s']:,.0f}",
                 f"{r['sentences_per_s']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                 f"{r['server_cpu_us_per_request']:.0f}", bad]  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")
    for per_request, _ in points:
        fast, rust = (next(r for r in rows if r["tokenizer"] == t and r["texts_per_request"] == per_request)
                      for t in ("fast path", "rust"))  # fmt: skip
        speed = fast["requests_per_s"] / rust["requests_per_s"]
        cost = rust["server_cpu_us_per_request"] / fast["server_cpu_us_per_request"]
        print(f"{per_request} text(s)/request: fast path {speed:.2f}x the requests/s at {cost:.2f}x less CPU")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"measure_s": args.measure_s, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
