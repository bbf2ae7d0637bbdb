"""What each load generator costs the host per request, without a model in the way.

A fixed-answer HTTP/1.1 server (asyncio + uvloop, one process, the answer the size of a
single-sentence float embedding response) is driven by the Python clients and by wrk, one after
the other, at the same concurrency; each row gives the requests/s the generator reached and the
CPU time the generator itself used per request (its finished processes' rusage, start-up and wrk's
dropped warm-up included). On the GPU machine this is the host time the benchmark's own load takes
from the 16 cores the server needs.

    .venv/bin/python bench/loadgen_cost.py --concurrency 16,64 --measure-s 5   # needs .tools/wrk
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import Target, load_test
from bench.loadgen_wrk import wrk_load_test
from bench.serving import free_port

ANSWER = json.dumps({"object": "list", "data": [{"embedding": [0.0123456789] * 384}]}).encode()
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(ANSWER),
    ANSWER,
)


class _Fixed(asyncio.Protocol):
    """Answers every complete request (headers + content-length body) with the same response."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            del self.buf[: end + 4 + length]
            self.transport.write(RESPONSE)


def _serve(port: int) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Fixed, "127.0.0.1", port, backlog=4096)
        await server.serve_forever()

    asyncio.run(main())


def _wait_listening(port: int, server: Any, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.is_alive():
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the fixed-answer server did not start listening")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", default="16,64")
    parser.add_argument("--clients", type=int, default=1, help="Python client processes / wrk threads")
    parser.add_argument("--measure-s", type=float, default=5.0)
    args = parser.parse_args()
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,), daemon=True)
    server.start()
    target = Target(port)
    rows: list[dict[str, Any]] = []
    try:
        _wait_listening(port, server)
        for c in [int(x) for x in args.concurrency.split(",")]:
            for name, run in (("python", load_test), ("wrk", wrk_load_test)):
                cpu0 = _cpu_s()
                row = run(target, c, 1, args.clients, 1.0, args.measure_s)
                cpu = _cpu_s() - cpu0
                answered = sum(row["codes"].values())
                row["generator_cpu_s"] = cpu
                row["generator_cpu_us_per_request"] = 1e6 * cpu / max(1, answered)
                rows.append(row)
                print(
                    f"  {name:<6} c={c:<4} {row['requests_per_s']:>9,.0f} req/s  generator CPU {cpu:5.2f} s "
                    f"= {row['generator_cpu_us_per_request']:5.1f} us/request  {row['codes']}",
                    flush=True,
                )
    finally:
        server.terminate()
        server.join(timeout=10)
    out = Path(__file__).resolve().parent / "results" / "loadgen-cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2))
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
