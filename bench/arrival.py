"""How long a server takes to be ready, and how long a new version takes to arrive in a running one
(issue 27, start-up: ready in ≤ 10 s on the GPU machine).

A canary reaches a running server the way canaryflow rolls it out: the routing file gains a
version with a small weight. Two figures per serving mode, in one run:

1. **ready**: `canaryflow serve --routing-file` started from nothing (the interpreter, the imports
   in the fork server, loading the weights, the graphs captured before ready) until `/readyz`
   answers 200 on many fresh connections (bench/serving.py::wait_ready), with where that time
   went from the server's own log marks (`startup` in the JSON: the CLI, the fork server's
   imports and which, each process's fork, load and warm-up; bench/startup_marks.py);
2. **arrival**: the routing file rewritten with version 2 (another copy of the same weights) at
   weight 10; from that write until `--confirm` requests in a row, each on a new connection (so
   replicas are asked in turn), naming `minilm/2` answer 200.

    python3 bench/arrival.py --model .assets/minilm-fp16 --device cuda --workers 8 \
        --mode replicas --mode engine --out $OUT/arrival.json
    .venv/bin/python bench/arrival.py --device cpu --workers 2 --mode replicas  # the mechanism
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving import free_port, gpu_memory_used_mib, stop_server, wait_ready  # noqa: E402
from bench.startup_marks import start_logged, summary, timeline  # noqa: E402

MODEL = "minilm"


def routing_yaml(model_dir: Path, versions: dict[str, int]) -> str:
    """A routing file serving each version (weight in percent) from the same folder, each loaded as
    its own copy (bench/overcommit.py's versions too)."""
    lines = [f"model: {MODEL}", "versions:"]
    for version, weight in versions.items():
        lines += [f"  - version: '{version}'", f"    uri: {json.dumps(str(model_dir))}",
                  f"    weight: {weight}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """The server polls the file: it must never read half of it."""
    part = path.with_suffix(".part")
    part.write_text(text)
    part.replace(path)


def answers(port: int, version: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = json.dumps({"input": "a canary arrives", "model": f"{MODEL}/{version}"})
        conn.request("POST", "/v1/embeddings", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        conn.close()


def measure(args: argparse.Namespace, mode: str, model_dir: Path, tmp: Path) -> dict[str, Any]:
    routing = tmp / f"routing-{mode}.yaml"
    write_atomically(routing, routing_yaml(model_dir, {"1": 100}))
    port = free_port()
    launcher = "import typer; from canaryflow.app.commands.serve import serve; typer.run(serve)"
    cmd = [
        sys.executable, "-c", launcher, "--routing-file", str(routing), "--port", str(port),
        "--workers", str(args.workers), "--device", args.device, f"--{mode}",
    ]  # fmt: skip
    print("server:", " ".join(cmd[3:]), flush=True)
    started = time.perf_counter()
    server, log_lines, started_wall = start_logged(cmd, cwd=ROOT)
    try:
        wait_ready(port, server, timeout_s=args.ready_timeout_s)
        ready_s = time.perf_counter() - started
        startup = timeline(log_lines, started_wall)
        print(f"{mode}: ready in {ready_s:.2f} s: {summary(startup)}", flush=True)
        memory_ready = gpu_memory_used_mib() if args.device.startswith("cuda") else None
        before = answers(port, "2")
        written = time.perf_counter()
        write_atomically(routing, routing_yaml(model_dir, {"1": 90, "2": 10}))
        in_a_row, codes = 0, dict[str, int]()
        deadline = written + args.arrival_timeout_s
        while in_a_row < args.confirm and time.perf_counter() < deadline:
            code = answers(port, "2")
            codes[str(code)] = codes.get(str(code), 0) + 1
            in_a_row = in_a_row + 1 if code == 200 else 0
            if code != 200:
                time.sleep(0.02)
        arrived = in_a_row >= args.confirm
        return {
            "mode": mode, "workers": args.workers, "ready_s": ready_s, "startup": startup,
            "gpu_memory_ready_mib": memory_ready, "version_2_before": before,
            "arrival_s": time.perf_counter() - written if arrived else None, "arrival_codes": codes,
        }  # fmt: skip
    finally:
        stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model folder (default: the packaged MiniLM)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--mode", action="append", choices=["replicas", "engine"], default=None)
    parser.add_argument("--confirm", type=int, default=32, help="200s in a row that mean arrived")
    parser.add_argument("--ready-timeout-s", type=float, default=300)
    parser.add_argument("--arrival-timeout-s", type=float, default=120)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "arrival.json"))
    args = parser.parse_args()
    if args.confirm < 1:
        parser.error("--confirm must be at least 1")
    if args.model is None:
        from canaryflow.adapters.model_assets import minilm_path

        args.model = str(minilm_path())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"device": args.device, "runs": []}
    if args.device.startswith("cuda"):
        import torch

        report["device"] = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory(prefix="bench-arrival-") as tmp:
        for mode in args.mode or ["replicas", "engine"]:
            run = measure(args, mode, Path(args.model).resolve(), Path(tmp))
            report["runs"].append(run)
            out.write_text(json.dumps(report, indent=2))
            arrival = "never" if run["arrival_s"] is None else f"{run['arrival_s']:.2f} s"
            print(f"{mode}: ready in {run['ready_s']:.2f} s, version 2 arrived in {arrival} "
                  f"({run['arrival_codes']})", flush=True)  # fmt: skip
    print(f"Device: {report['device']}")
    print("| mode | workers | ready s | new version arrives s | GPU MiB at ready |")
    print("|---|---:|---:|---:|---:|")
    for run in report["runs"]:
        arrival = "-" if run["arrival_s"] is None else f"{run['arrival_s']:.2f}"
        print(f"| {run['mode']} | {run['workers']} | {run['ready_s']:.2f} | {arrival} | "
              f"{run['gpu_memory_ready_mib'] or '-'} |")  # fmt: skip


if __name__ == "__main__":
    main()
