"""Starting, watching and stopping the servers the benchmarks measure (bench/inference.py,
bench/overload.py, bench/loadgen_cost.py): free ports, readiness over many fresh connections,
py-spy on every server process, the GPU memory in use."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.samples import Sample


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


def metric_samples(port: int) -> Iterator[Sample]:
    """Every sample on the server's `/metrics` page now (all its processes' series merged)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        page = response.read().decode()
    for family in text_string_to_metric_families(page):
        yield from family.samples


def gpu_memory_used_mib() -> int | None:
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


def wait_ready(
    port: int, server: subprocess.Popen, timeout_s: float = 180, path: str = "/ready", streak_needed: int = 40
) -> None:
    """Every worker must be ready: ask on many fresh connections (the kernel spreads them)."""
    deadline = time.monotonic() + timeout_s
    streak = 0
    while streak < streak_needed:
        if time.monotonic() > deadline:
            raise TimeoutError("server not ready")
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
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
