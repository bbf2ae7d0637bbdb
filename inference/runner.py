"""Run the server: one process, or several sharing the port (SO_REUSEPORT) for HTTP throughput.

One Python process tops out at a few thousand HTTP requests per second, far below what one GPU can
embed; several workers, each with its own copy of the (small) models and its own batcher, share the
GPU. Their metrics are merged through prometheus_client's multiprocess files.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
from typing import Any

from canaryflow.core.routing import RoutingConfig
from inference.settings import InferenceSettings


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def _uvicorn_options() -> dict[str, Any]:
    options: dict[str, Any] = {"access_log": False, "log_level": "warning", "lifespan": "on"}
    try:
        import uvloop  # noqa: F401

        options["loop"] = "uvloop"
    except ImportError:
        options["loop"] = "asyncio"
    try:
        import httptools  # noqa: F401

        options["http"] = "httptools"
    except ImportError:
        options["http"] = "h11"
    return options


def _serve(settings: InferenceSettings, routing: RoutingConfig | None, sock: socket.socket) -> None:
    import uvicorn

    from inference.app import create_app

    app = create_app(settings, routing)
    config = uvicorn.Config(app, limit_concurrency=settings.max_connections, **_uvicorn_options())
    uvicorn.Server(config).run(sockets=[sock])


def _worker(settings_json: str, routing_json: str | None, index: int, threads: int) -> None:
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker{index} %(levelname)s %(message)s")
    settings = InferenceSettings.model_validate_json(settings_json)
    routing = RoutingConfig.model_validate_json(routing_json) if routing_json else None
    _serve(settings, routing, _bind(settings.host, settings.port, reuse_port=True))


def run(settings: InferenceSettings, routing: RoutingConfig | None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if settings.workers == 1:
        _serve(settings, routing, _bind(settings.host, settings.port, reuse_port=False))
        return
    metrics_dir = tempfile.mkdtemp(prefix="canaryflow-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    threads = max(1, (os.cpu_count() or 1) // settings.workers)
    ctx = multiprocessing.get_context("spawn")
    args = (settings.model_dump_json(), routing.model_dump_json() if routing else None)
    procs = [
        ctx.Process(target=_worker, args=(*args, i, threads), daemon=False) for i in range(settings.workers)
    ]
    for proc in procs:
        proc.start()

    def stop(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for proc in procs:
            proc.join()
    finally:
        stop(signal.SIGTERM, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
