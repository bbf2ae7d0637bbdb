"""Run the server: one process, or N processes sharing the port (SO_REUSEPORT).

One process (`workers=1`) holds the models and serves HTTP: simplest, enough on a CPU. One Python
process cannot parse tens of thousands of HTTP requests per second, so `workers=N` starts N:
- replicas (default): each process is a whole server with its own copy of the models, its own
  batcher and, on a GPU, its own CUDA context and graphs. With forward passes replayed from CUDA
  graphs the GPU has time to spare and the host's cores run out first; replicas spend the fewest
  cycles per request (no hop between processes) and were the fastest mode in every H100 run
  (bench/inference.md), at N times the device memory (8 replicas of MiniLM: 22 GB).
- engine (`engine=True`): N HTTP fronts that parse, route and tokenize, and one engine process
  that alone holds the models and the GPU (`inference.engine_process`): one copy of the weights, one CUDA
  context (5 GB instead of 22 GB), one memory budget for the LRU cache, every front's texts merged
  into the same batches, at the cost of a pickled hop each way (40-95% of the replicas'
  throughput within the latency bounds across four H100 runs).
Metrics of all processes are merged through prometheus_client's multiprocess files, so
`/metrics` on any process shows the whole server.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any

from canaryflow.kernel.contracts.routing import RoutingConfig
from inference.connection_guard import ConnectionLimits, guarded_protocol
from inference.server_settings import InferenceSettings

# The event loop and the batcher's worker threads share one GIL. A thread back from the GPU waits
# for the GIL until its holder is asked to drop it: by default up to 5 ms, a wait that lands on
# every batch of a busy GPU server, in its latency and in the GPU's idle time. On a CPU the forward
# pass itself needs the GIL between its operators, so there the default stays.
_GPU_GIL_SWITCH_INTERVAL_S = 0.0005


def _tune_gil(settings: InferenceSettings) -> None:
    if settings.resolved_device().startswith("cuda"):
        sys.setswitchinterval(_GPU_GIL_SWITCH_INTERVAL_S)


_M_ARENA_MAX = -8  # glibc's mallopt parameter


def _bound_malloc_arenas(settings: InferenceSettings) -> None:
    """glibc gives each thread that allocates its own arena (up to 8 per core) and keeps what was freed
    in them: the server's 16 embed threads and the event loop grow RSS to a high-water mark that is
    never given back (bench/inference_soak.py). A bound set before the threads start caps it."""
    if not settings.max_malloc_arenas:  # 0: glibc's own bound
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, settings.max_malloc_arenas)
    except (OSError, AttributeError):  # not glibc: its allocator has no such setting
        pass


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    return sock


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _uvicorn_options() -> dict[str, Any]:
    return {
        "access_log": False,
        "proxy_headers": False,  # no X-Forwarded-* rewriting: nothing here reads the client address
        "server_header": False,
        "log_level": "warning",
        "lifespan": "on",
        "loop": "uvloop" if _has("uvloop") else "asyncio",
        "http": "httptools" if _has("httptools") else "h11",
    }


def _serve_http(
    settings: InferenceSettings, routing: RoutingConfig | None, sock: socket.socket, engine: str | None
) -> None:
    import uvicorn

    from inference.http_front.assembly import create_app

    _tune_gil(settings)
    _bound_malloc_arenas(settings)
    app = create_app(settings, routing, engine_socket=engine)
    options = _uvicorn_options()
    limits = ConnectionLimits(
        settings.header_timeout_s, settings.body_timeout_s, settings.max_connections_per_client
    )
    options["http"] = guarded_protocol(options["http"], limits)
    config = uvicorn.Config(app, limit_concurrency=settings.max_connections, **options)
    uvicorn.Server(config).run(sockets=[sock])


def _front(settings_json: str, engine: str, index: int) -> None:
    # The fronts are the parallelism: each tokenizes its own requests on one thread.
    os.environ["RAYON_NUM_THREADS"] = "1"
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s front{index} %(levelname)s %(message)s")
    logging.getLogger(__name__).info("forked")
    settings = InferenceSettings.model_validate_json(settings_json)
    _serve_http(settings, None, _bind(settings.host, settings.port, reuse_port=True), engine)


def _replica(settings_json: str, routing_json: str | None, index: int, threads: int) -> None:
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker{index} %(levelname)s %(message)s")
    logging.getLogger(__name__).info("forked")  # the start-up timeline's first mark after the fork server
    import torch

    torch.set_num_threads(threads)
    settings = InferenceSettings.model_validate_json(settings_json)
    routing = RoutingConfig.model_validate_json(routing_json) if routing_json else None
    _serve_http(settings, routing, _bind(settings.host, settings.port, reuse_port=True), None)


def _engine(settings_json: str, routing_json: str | None, engine: str, threads: int) -> None:
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s engine %(levelname)s %(message)s")
    logging.getLogger(__name__).info("forked")
    import torch

    from inference.engine_process import run_engine
    from inference.server import ModelServer

    torch.set_num_threads(min(threads, 4))
    settings = InferenceSettings.model_validate_json(settings_json)
    # The engine's one queue holds what each front's replica would have queued: the bound is per
    # serving process, and here one process serves all the fronts.
    settings = settings.model_copy(update={"max_queue_tokens": settings.max_queue_tokens * settings.workers})
    routing = RoutingConfig.model_validate_json(routing_json) if routing_json else None
    _tune_gil(settings)
    if _has("uvloop"):
        import uvloop

        uvloop.install()
    asyncio.run(run_engine(ModelServer(settings), routing, engine))


# Imported once, in the fork server, and inherited by every worker forked from it: N processes each
# importing torch and transformers at once, on the same cores, took most of a multi-process GPU
# server's start-up (8 replicas: 25 s to ready on 16 cores, bench/inference.md). sentence-transformers
# is not among them: the plain module chain needs only transformers (`inference.models.plain_chain`).
# transformers itself (3.6 s beside torch's 1.3 s on the development machine, most of the 10 s the GPU
# machine's fork server spent) is imported only when a served model may need it: every version in
# the routing at start is a local folder the plain-torch BERT encoder serves
# (`loader.served_without_transformers`: the files decide, read without importing torch) leaves it
# out; a registry URI (resolved by the worker), a non-BERT model or a routing that cannot be read
# keeps it. A version routed in later that needs it imports it in the worker that loads it.
# Nothing here touches CUDA at import, so every worker still creates its own context after the fork.
_PRELOAD = (
    "torch",
    "tokenizers",
    "safetensors",
    "uvicorn",
    "inference.http_front.assembly",
    "inference.models.loader",
    "inference.models.plain_chain",
)
_TRANSFORMERS_PRELOAD = (
    "transformers.modeling_utils",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
    "transformers.models.bert.modeling_bert",
)


def _served_uris(settings: InferenceSettings, routing: RoutingConfig | None) -> list[str] | None:
    """The model URIs routed at start; None when the routing file cannot be read here."""
    if routing is None and settings.routing_file is not None:
        from inference.server import read_routing_file

        try:
            routing = read_routing_file(settings.routing_file)
        except (OSError, ValueError):
            return None
    return None if routing is None else [version.uri for version in routing.versions]


def preload_modules(settings: InferenceSettings, routing: RoutingConfig | None) -> list[str]:
    """What the fork server imports: transformers only where a model served at start may need it."""
    from inference.models.loader import served_without_transformers

    uris = _served_uris(settings, routing)
    plain = uris is not None and all(served_without_transformers(uri) for uri in uris)
    names = _PRELOAD if plain else _PRELOAD + _TRANSFORMERS_PRELOAD
    # The top-level package's spec only: a submodule's (`transformers.modeling_utils`) imports its
    # package in this process, 1.4 s for transformers on the development machine.
    return [name for name in names if importlib.util.find_spec(name.split(".")[0]) is not None]


def _worker_context(preload: list[str]) -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(preload)
    return ctx


def run(settings: InferenceSettings, routing: RoutingConfig | None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if settings.workers == 1:
        _serve_http(settings, routing, _bind(settings.host, settings.port, reuse_port=False), None)
        return
    workdir = tempfile.mkdtemp(prefix="canaryflow-serve-")
    metrics_dir = os.path.join(workdir, "metrics")
    os.mkdir(metrics_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    engine_socket = os.path.join(workdir, "engine.sock")
    preload = preload_modules(settings, routing)
    logging.getLogger(__name__).info("fork server imports: %s", ", ".join(preload))
    ctx = _worker_context(preload)
    # Every process sees the mode the parent chose (and each worker its streams from it).
    settings = settings.model_copy(update={"engine": settings.resolved_engine()})
    logging.getLogger(__name__).info("serving mode: %s", "engine" if settings.engine else "replicas")
    settings_json = settings.model_dump_json()
    routing_json = routing.model_dump_json() if routing else None
    cores = os.cpu_count() or 2
    if settings.engine:  # resolved by `run`
        threads = max(2, cores // 4)
        procs = [ctx.Process(target=_engine, args=(settings_json, routing_json, engine_socket, threads))]
        fronts = range(settings.workers)
        procs += [ctx.Process(target=_front, args=(settings_json, engine_socket, i)) for i in fronts]
    else:
        threads = max(1, cores // settings.workers)
        procs = [
            ctx.Process(target=_replica, args=(settings_json, routing_json, i, threads))
            for i in range(settings.workers)
        ]
    logging.getLogger(__name__).info("starting %d processes from a fork server", len(procs))
    for proc in procs:
        proc.start()

    # The fronts stop before the engine: a front drains its connections on SIGTERM, and the requests
    # it finishes need the engine's answers (stopped together, every request in flight failed with
    # "engine connection lost").
    stages = [procs[1:], procs[:1]] if settings.engine else [procs]

    def stop(signum: int, _frame: object) -> None:
        # Graceful first (uvicorn drains its connections), then killed: the server never exits
        # leaving a worker behind on the port.
        deadline = time.monotonic() + 10
        for stage in stages:
            for proc in stage:
                if proc.is_alive():
                    proc.terminate()
            for proc in stage:
                proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        # One process gone (the engine failing to start, a front crashing) ends the whole server,
        # so a supervisor (Kubernetes) restarts it instead of it serving half-broken.
        multiprocessing.connection.wait([proc.sentinel for proc in procs])
    finally:
        stop(signal.SIGTERM, None)
        shutil.rmtree(workdir, ignore_errors=True)
