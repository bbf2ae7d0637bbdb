"""The wrk load generator (`bench/inference.py --load-generator wrk`): the same bodies as the Python
generator, sent by wrk 4.1 (C), so that the load takes less of the host cores the server needs
(about a fifth less CPU per request than the Python client: bench/loadgen_cost.py).

wrk comes from Debian (`bash bench/tools.sh` unpacks it with its libluajit into `.tools/`, which
is gitignored and travels to the GPU machine with the checkout; `.tools/wrk` is a wrapper that sets
LD_LIBRARY_PATH). The Lua script `bench/wrk_embeddings.lua` counts every answer by status and
prints one `WRK_JSON {...}` line; `parse_wrk_output` turns it into the benchmark's row.

wrk takes whole seconds: the warm-up and measurement are rounded up. The warm-up is a separate wrk
run whose figures are dropped (wrk has no warm-up of its own).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.loadgen import REQUESTS_PER_CLIENT, Target, client_shares, request_bodies, summarize

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "wrk_embeddings.lua"
MARKER = "WRK_JSON "


def find_wrk() -> str | None:
    """`.tools/wrk` (the unpacked Debian package) or a `wrk` on PATH."""
    local = ROOT / ".tools" / "wrk"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("wrk")


def parse_wrk_output(stdout: str, concurrency: int, per_request: int) -> dict[str, Any]:
    """The benchmark's row from the script's WRK_JSON line.

    Socket errors and timeouts join the status counts (`read_error`, `timeout`, ...): a request
    that never got an answer is as visible as a 429. Throughput counts 200 answers over wrk's own
    measured duration.
    """
    lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise ValueError(f"wrk printed no {MARKER.strip()} line; its output ends: {stdout[-400:]!r}")
    found = json.loads(lines[-1][len(MARKER) :])
    codes = {str(code): int(n) for code, n in found["codes"].items()}
    for kind in ("connect", "read", "write", "timeout"):
        n = int(found["errors"][kind])
        if n:
            codes[kind if kind == "timeout" else f"{kind}_error"] = n
    answered = sum(n for code, n in codes.items() if code.isdigit())
    if answered != int(found["requests"]):
        codes["uncounted"] = int(found["requests"]) - answered
    seconds = int(found["duration_us"]) / 1e6
    if seconds <= 0:
        raise ValueError(f"wrk reported a duration of {found['duration_us']} us")
    return summarize(
        "wrk", concurrency, per_request, codes.get("200", 0), seconds,
        found["p50_us"] / 1000, found["p99_us"] / 1000, codes,
    )  # fmt: skip


def write_bodies(target: Target, per_request: int, threads: int, directory: Path) -> Path:
    """One body a line: the Python generator's bodies for as many clients as wrk has threads."""
    path = directory / f"bodies-{per_request}.jsonl"
    with path.open("wb") as out:
        for i in range(threads):
            for body in request_bodies(target, per_request, REQUESTS_PER_CLIENT, seed=100 + i):
                out.write(body + b"\n")
    return path


def _run(wrk: str, target: Target, concurrency: int, threads: int, seconds: int, bodies: Path) -> str:
    cmd = [
        wrk, "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s", "--timeout", "60s",
        "-s", str(SCRIPT), f"http://127.0.0.1:{target.port}", "--", str(bodies), target.path,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 90, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip()[-400:]}")
    return done.stdout


def wrk_load_test(
    target: Target, concurrency: int, per_request: int, clients: int, warmup_s: float, measure_s: float,
    wrk: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """wrk with `clients` threads (as many as the Python generator's processes) and `concurrency`
    connections; a dropped warm-up run first when `warmup_s` > 0."""
    wrk = wrk or find_wrk()
    if wrk is None:
        raise FileNotFoundError("wrk not found: run `bash bench/tools.sh` (unpacks it into .tools/)")
    threads = len(client_shares(concurrency, clients))
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        bodies = write_bodies(target, per_request, threads, Path(tmp))
        if warmup_s > 0:
            _run(wrk, target, concurrency, threads, math.ceil(warmup_s), bodies)
        stdout = _run(wrk, target, concurrency, threads, max(1, math.ceil(measure_s)), bodies)
    return parse_wrk_output(stdout, concurrency, per_request)
