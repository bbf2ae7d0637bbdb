"""The engine process: the one process that holds the models (and the GPU), fed by HTTP fronts.

One Python process cannot parse tens of thousands of HTTP requests per second, and several
processes each with its own CUDA context make the GPU time-slice between them, so a forward pass
waits behind the others' slices. So the work is split: N front processes speak HTTP, route and
encode JSON; one engine process batches every front's texts together and runs the models.

Fronts talk to the engine over a Unix socket, in frames of `4-byte length + pickle`. Every request
that arrives on a front in the same event-loop turn travels in one frame, and the engine answers
in frames of whatever finished in the same turn, so there are far fewer messages than requests.
The engine pushes the routing table to the fronts after each change it has loaded, so a front
never routes to a version the engine does not have yet.

    front -> engine   ("embed", [(request_id, version, TokenizedBatch), ...])
                      ("cancel", [request_id, ...])   (deadline passed or client gone: drop it)
    engine -> front   ("config", routing_json, {loaded version: VersionInfo.wire()}) | ("error", reason)
                      ("results", [(request_id, "ok", (embeddings, tokens, queue_s))
                                   | (request_id, "queue_full", (reason, retry_after_s))
                                   | (request_id, "unknown"|"error", reason)])
"""

from __future__ import annotations

import asyncio
import functools
import logging
import pickle
import struct
from typing import Any

from canaryflow.kernel.contracts.routing import RoutingConfig
from inference.backend import VersionInfo
from inference.batching import EmbedResult, QueueFull
from inference.models.base import TokenizedBatch
from inference.routing_table import RoutingTable
from inference.server import ModelServer, UnknownVersion, freeze_heap

log = logging.getLogger("canaryflow.inference.engine")
_HEADER = struct.Struct("!I")


def _frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return pickle.loads(await reader.readexactly(size))


class _Front:
    """The engine's side of one front connection: replies are coalesced per event-loop turn."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._outbox: list[tuple[int, str, Any]] = []
        self.waiting: dict[int, asyncio.Future[EmbedResult]] = {}

    def send(self, message: Any) -> None:
        if not self._writer.is_closing():
            self._writer.write(_frame(message))

    def reply(self, request_id: int, kind: str, payload: Any) -> None:
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append((request_id, kind, payload))

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        self.send(("results", outbox))

    def done(self, request_id: int, future: asyncio.Future[EmbedResult]) -> None:
        self.waiting.pop(request_id, None)
        if future.cancelled():  # the front cancelled it: nobody waits for an answer
            return
        error = future.exception()
        if error is None:
            result = future.result()
            self.reply(request_id, "ok", (result.embeddings, result.tokens, result.queue_s))
        else:
            self.reply(request_id, "error", f"{type(error).__name__}: {error}")


class Engine:
    def __init__(self, server: ModelServer) -> None:
        self.server = server
        self.fronts: set[_Front] = set()
        server.listeners.append(self._broadcast_config)

    def _config_message(self, config: RoutingConfig) -> tuple[str, str, dict[str, dict[str, Any]]]:
        infos = {version: info.wire() for version, info in self.server.version_infos().items()}
        return ("config", config.model_dump_json(), infos)

    def _broadcast_config(self, config: RoutingConfig) -> None:
        for front in self.fronts:
            front.send(self._config_message(config))

    def broadcast_error(self) -> None:
        for front in self.fronts:
            front.send(("error", self.server.load_error))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        front = _Front(writer)
        self.fronts.add(front)
        if self.server.table is not None:
            front.send(self._config_message(self.server.table.config))
        if self.server.load_error:
            front.send(("error", self.server.load_error))
        try:
            while True:
                kind, items = await _read_frame(reader)
                if kind == "cancel":
                    for request_id in items:
                        waiting = front.waiting.get(request_id)
                        if waiting is not None:
                            waiting.cancel()
                    continue
                for request_id, version, tokens in items:
                    try:
                        future = self.server.submit(version, tokens)
                    except QueueFull as exc:
                        front.reply(request_id, "queue_full", (str(exc), exc.retry_after_s))
                        continue
                    except UnknownVersion as exc:
                        front.reply(request_id, "unknown", str(exc))
                        continue
                    front.waiting[request_id] = future
                    future.add_done_callback(functools.partial(front.done, request_id))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.fronts.discard(front)
            writer.close()


async def run_engine(server: ModelServer, routing: RoutingConfig | None, socket_path: str) -> None:
    engine = Engine(server)
    listener = await asyncio.start_unix_server(engine.handle, path=socket_path)
    await server.start(routing)
    if server.load_error:
        engine.broadcast_error()
    async with listener:
        await listener.serve_forever()


class EngineClient:
    """A front's handle on the engine; implements EmbeddingBackend."""

    def __init__(self, socket_path: str) -> None:
        self._path = socket_path
        self.table: RoutingTable | None = None
        self.load_error: str | None = None
        self._infos: dict[str, VersionInfo] = {}
        self._futures: dict[int, asyncio.Future[EmbedResult]] = {}
        self._outbox: list[tuple[int, str, Any]] = []
        self._cancelled: list[int] = []
        self._next_id = 0
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> set[str]:
        return set(self._infos)

    def info(self, version: str) -> VersionInfo | None:
        return self._infos.get(version)

    def check_room(self, version: str) -> None:
        """The engine's queue is known to the engine only: it refuses when the work arrives."""

    async def start(self, timeout_s: float = 900.0) -> None:
        """Connect, waiting for the engine to listen (it starts alongside the fronts)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                reader, self._writer = await asyncio.open_unix_connection(self._path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if loop.time() > deadline:
                    self.load_error = f"engine socket {self._path}: not listening"
                    return
                await asyncio.sleep(0.2)
        self._reader_task = loop.create_task(self._read(reader))
        freeze_heap()

    def submit(self, version: str, tokens: TokenizedBatch) -> asyncio.Future[EmbedResult]:
        if version not in self._infos or self._writer is None:
            raise UnknownVersion(f"version {version} is not loaded")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[EmbedResult] = loop.create_future()
        self._next_id += 1
        request_id = self._next_id
        self._futures[request_id] = future
        self._schedule_flush(loop)
        self._outbox.append((request_id, version, tokens))
        future.add_done_callback(functools.partial(self._on_done, request_id))
        return future

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._outbox and not self._cancelled:
            loop.call_soon(self._flush)

    def _on_done(self, request_id: int, future: asyncio.Future[EmbedResult]) -> None:
        if self._futures.pop(request_id, None) is not None and future.cancelled():
            self._schedule_flush(asyncio.get_running_loop())
            self._cancelled.append(request_id)

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        cancelled, self._cancelled = self._cancelled, []
        if self._writer is None or self._writer.is_closing():
            return
        if outbox:
            self._writer.write(_frame(("embed", outbox)))
        if cancelled:
            self._writer.write(_frame(("cancel", cancelled)))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await _read_frame(reader)
                if message[0] == "results":
                    self._resolve(message[1])
                elif message[0] == "config":
                    infos: dict[str, dict[str, Any]] = message[2]
                    self._infos = {
                        v: self._infos[v] if v in self._infos else VersionInfo.from_wire(doc)
                        for v, doc in infos.items()
                    }
                    self.table = RoutingTable.from_config(RoutingConfig.model_validate_json(message[1]))
                elif message[0] == "error":
                    self.load_error = message[1]
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self.load_error = f"engine connection lost ({type(exc).__name__})"
            futures, self._futures = self._futures, {}
            for future in futures.values():
                if not future.done():
                    future.set_exception(RuntimeError(self.load_error))

    def _resolve(self, results: list[tuple[int, str, Any]]) -> None:
        for request_id, kind, payload in results:
            future = self._futures.pop(request_id, None)
            if future is None or future.done():
                continue
            if kind == "ok":
                future.set_result(EmbedResult(*payload))
            elif kind == "queue_full":
                future.set_exception(QueueFull(*payload))
            elif kind == "unknown":
                future.set_exception(UnknownVersion(payload))
            else:
                future.set_exception(RuntimeError(payload))

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._writer is not None:
            self._writer.close()
