"""Soak: the inference server's resident memory across rounds of load, to tell a leak from a high-water mark.

The issue that asked for it saw 592 MiB before load and 774 MiB after three 20 s runs of 300 clients and
minutes of idling, never given back. One number after load cannot say whether that is a leak (memory
held per request served: it grows with every round) or the allocator's high-water mark (glibc keeps
freed memory in per-thread arenas, up to 8 per core, and returns little of it: it grows in the first
rounds, then stays flat).

This benchmark runs the real `canaryflow serve` (loopback only) through `--rounds` rounds of
`--round-s` seconds at `--concurrency` keep-alive clients (threads of this process), each followed by
`--idle-s` idle seconds, and samples the server's RSS (`/proc/<pid>/status` VmRSS) before load and
after each idle pause, once per allocator setting (`--arenas`: `default` = glibc's own, or a number =
the server's `max_malloc_arenas`). It prints a table and writes JSON (`--out`).

Verdict per setting: `growth_late_mib_per_round` is the mean RSS growth per round over the second half
of the rounds; a leak keeps growing there, a high-water mark does not (below `--flat-mib`).

    python -m bench.inference_soak --rounds 6 --round-s 15 --idle-s 5 --concurrency 64 --out soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import make_sentences
from canaryflow.app.local.process import free_port

ROOT = Path(__file__).resolve().parents[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _load(url: str, concurrency: int, seconds: float) -> dict[str, int]:
    """`concurrency` keep-alive clients posting one sentence each, back to back, for `seconds`; the
    answers counted by status (a socket error as "error"): no failure hidden."""
    sentences = make_sentences(512)
    codes: dict[str, int] = {}
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client(index: int) -> None:
        with httpx.Client(timeout=30) as http:
            k = index
            while time.monotonic() < end:
                body = {"input": sentences[k % len(sentences)], "model": "minilm"}
                try:
                    code = str(http.post(f"{url}/v1/embeddings", json=body).status_code)
                except httpx.HTTPError:
                    code = "error"
                with lock:
                    codes[code] = codes.get(code, 0) + 1
                k += concurrency

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server not ready in time")


def soak(args: argparse.Namespace, arenas: str) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # "default": glibc's own (8 arenas per core); a number: the server's bound.
    env["CANARYFLOW_INFERENCE_MAX_MALLOC_ARENAS"] = "0" if arenas == "default" else arenas
    command = [sys.executable, "-m", "canaryflow.app.cli", "serve", "--model-uri", args.model,
               "--model-name", "minilm", "--port", str(port), "--device", args.device]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc, 240)
        time.sleep(args.idle_s)
        samples = [rss_mib(proc.pid)]
        served, codes = [], []
        for _ in range(args.rounds):
            answered = _load(f"http://127.0.0.1:{port}", args.concurrency, args.round_s)
            served.append(answered.get("200", 0))
            codes.append(answered)
            time.sleep(args.idle_s)
            samples.append(rss_mib(proc.pid))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    half = max(1, args.rounds // 2)
    late = samples[-half - 1 :]
    growth_late = (late[-1] - late[0]) / half
    return {
        "arenas": arenas,
        "rss_mib": [round(x, 1) for x in samples],
        "requests_per_round": served,
        "codes_per_round": codes,
        "growth_total_mib": round(samples[-1] - samples[0], 1),
        "growth_late_mib_per_round": round(growth_late, 2),
        "verdict": "grows (leak?)" if growth_late > args.flat_mib else "flat (high-water mark)",
    }


def main() -> None:
    from canaryflow.adapters.model_assets import minilm_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(minilm_path()))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--round-s", type=float, default=15.0)
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--arenas", default="default,2", help="comma-separated: default or a number")
    parser.add_argument("--flat-mib", type=float, default=2.0, help="late growth per round below: flat")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    runs = [soak(args, arenas) for arenas in args.arenas.split(",")]
    print(f"{'arenas':>8} {'before':>8} {'after':>8} {'growth':>8} {'late/round':>10}  rss per round (MiB)")
    for run in runs:
        rss = run["rss_mib"]
        trace = " ".join(f"{x:.0f}" for x in rss)
        print(f"{run['arenas']:>8} {rss[0]:>8.0f} {rss[-1]:>8.0f} {run['growth_total_mib']:>8.0f} "
              f"{run['growth_late_mib_per_round']:>10.1f}  {trace}  {run['verdict']}")  # fmt: skip
    doc = {"config": {k: str(v) for k, v in vars(args).items()}, "runs": runs}
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
