"""The engine process: the one process that holds the models (and the GPU), fed by HTTP fronts.

One Python process cannot parse tens of thousands of HTTP requests per second, and several
processes each with its own CUDA context make the GPU time-slice between them, so a forward pass
waits behind the others' slices. So the work is split: N front processes speak HTTP, route and
encode JSON; one engine process batches every front's texts together and runs the models.

Fronts talk to the engine over a Unix socket, in frames of `4-byte length + pickle`. The unit on
the wire is a group, not a request: every request for one version that arrives on a front in the
same event-loop turn is packed into one `TokenizedBatch` (a few flat arrays), which the engine
queues as one item and answers with one array of rows; the front keeps which rows are whose. So
the engine's per-request cost is a share of a few array operations, not a pickled object, a future
and a callback each: at 50,000 single-sentence requests/s that per-request cost was the engine's
limit. The engine pushes the routing table to the fronts after each change it has loaded, so a
front never routes to a version the engine does not have yet.

    front -> engine   ("embed", [(group_id, version, TokenizedBatch), ...])
                      ("cancel", [group_id, ...])   (every request of the group gone: drop it)
    engine -> front   ("config", routing_json, {loaded version: VersionInfo.wire()}) | ("error", reason)
                      ("results", [(group_id, "ok", (embeddings, queue_s))
                                   | (group_id, "queue_full", (reason, retry_after_s))
                                   | (group_id, "unknown"|"error", reason)])
"""

from __future__ import annotations

import asyncio
import functools
import logging
import pickle
import struct
from dataclasses import dataclass
from typing import Any

from canaryflow.kernel.contracts.routing import RoutingConfig
from inference.backend import VersionInfo
from inference.batching import EmbedResult, QueueFull
from inference.models.base import PASS_TOKENS, TokenizedBatch
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

    def reply(self, group_id: int, kind: str, payload: Any) -> None:
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append((group_id, kind, payload))

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        self.send(("results", outbox))

    def done(self, group_id: int, future: asyncio.Future[EmbedResult]) -> None:
        self.waiting.pop(group_id, None)
        if future.cancelled():  # the front cancelled it: nobody waits for an answer
            return
        error = future.exception()
        if error is None:
            result = future.result()
            self.reply(group_id, "ok", (result.embeddings, result.queue_s))
        else:
            self.reply(group_id, "error", f"{type(error).__name__}: {error}")


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
                    for group_id in items:
                        waiting = front.waiting.get(group_id)
                        if waiting is not None:
                            waiting.cancel()
                    continue
                for group_id, version, tokens in items:
                    try:
                        future = self.server.submit(version, tokens)
                    except QueueFull as exc:
                        front.reply(group_id, "queue_full", (str(exc), exc.retry_after_s))
                        continue
                    except UnknownVersion as exc:
                        front.reply(group_id, "unknown", str(exc))
                        continue
                    front.waiting[group_id] = future
                    future.add_done_callback(functools.partial(front.done, group_id))
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


@dataclass(slots=True)
class _Group:
    """A front's requests for one version from one event-loop turn, queued as one item."""

    futures: list[asyncio.Future[EmbedResult]]
    sizes: list[int]  # texts per request, in order
    tokens: list[int]  # tokens per request
    live: int  # requests still waiting (not cancelled)


class EngineClient:
    """A front's handle on the engine; implements EmbeddingBackend."""

    def __init__(
        self, socket_path: str, max_group_texts: int = 256, max_group_tokens: int = PASS_TOKENS
    ) -> None:
        self._path = socket_path
        # A group is cut at the engine's batch size in texts and at one graphed pass of tokens (the
        # batcher holds a batch to one pass, and an item is never split): a turn's worth of large
        # requests still spreads over several of the engine's batches in flight.
        self._max_group_texts = max_group_texts
        self._max_group_tokens = max_group_tokens
        self.table: RoutingTable | None = None
        self.load_error: str | None = None
        self._infos: dict[str, VersionInfo] = {}
        self._groups: dict[int, _Group] = {}
        self._outbox: dict[str, list[tuple[asyncio.Future[EmbedResult], TokenizedBatch]]] = {}
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
        if self._writer.is_closing() or (self._reader_task is not None and self._reader_task.done()):
            # The engine is gone: a request queued now would wait for an answer that never comes.
            raise RuntimeError(self.load_error or "engine connection lost")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[EmbedResult] = loop.create_future()
        self._schedule_flush(loop)
        self._outbox.setdefault(version, []).append((future, tokens))
        return future

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._outbox and not self._cancelled:
            loop.call_soon(self._flush)

    def _on_done(self, group_id: int, future: asyncio.Future[EmbedResult]) -> None:
        if not future.cancelled():
            return
        group = self._groups.get(group_id)
        if group is None:
            return
        group.live -= 1
        if group.live == 0:  # nobody waits for any of its rows: the engine may drop it
            del self._groups[group_id]
            self._schedule_flush(asyncio.get_running_loop())
            self._cancelled.append(group_id)

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, {}
        cancelled, self._cancelled = self._cancelled, []
        if self._writer is None or self._writer.is_closing():
            return
        items = [item for version, queued in outbox.items() for item in self._pack(version, queued)]
        if items:
            self._writer.write(_frame(("embed", items)))
        if cancelled:
            self._writer.write(_frame(("cancel", cancelled)))

    def _pack(
        self, version: str, queued: list[tuple[asyncio.Future[EmbedResult], TokenizedBatch]]
    ) -> list[tuple[int, str, TokenizedBatch]]:
        """One turn's requests for a version as groups of at most `max_group_texts` texts and
        `max_group_tokens` tokens."""
        parts: list[list[tuple[asyncio.Future[EmbedResult], TokenizedBatch, int]]] = [[]]
        texts = count = 0
        for future, tokens in queued:
            if future.done():  # cancelled before it left
                continue
            size = int(tokens.lengths.sum())
            if parts[-1] and (
                texts + len(tokens) > self._max_group_texts or count + size > self._max_group_tokens
            ):
                parts.append([])
                texts = count = 0
            parts[-1].append((future, tokens, size))
            texts += len(tokens)
            count += size
        items: list[tuple[int, str, TokenizedBatch]] = []
        for part in parts:
            if not part:
                continue
            self._next_id += 1
            group_id = self._next_id
            group = _Group([f for f, _, _ in part], [len(t) for _, t, _ in part],
                           [size for _, _, size in part], len(part))  # fmt: skip
            self._groups[group_id] = group
            for future in group.futures:
                future.add_done_callback(functools.partial(self._on_done, group_id))
            items.append((group_id, version, TokenizedBatch.concat([t for _, t, _ in part])))
        return items

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
            groups, self._groups = self._groups, {}
            for group in groups.values():
                for future in group.futures:
                    if not future.done():
                        future.set_exception(RuntimeError(self.load_error))

    def _resolve(self, results: list[tuple[int, str, Any]]) -> None:
        for group_id, kind, payload in results:
            group = self._groups.pop(group_id, None)
            if group is None:  # every request of it was cancelled
                continue
            if kind == "ok":
                embeddings, queue_s = payload
                start = 0
                for future, size, tokens in zip(group.futures, group.sizes, group.tokens, strict=True):
                    if not future.done():
                        future.set_result(EmbedResult(embeddings[start : start + size], tokens, queue_s))
                    start += size
                continue
            if kind == "queue_full":
                error: Exception = QueueFull(*payload)
            elif kind == "unknown":
                error = UnknownVersion(payload)
            else:
                error = RuntimeError(payload)
            for future in group.futures:
                if not future.done():
                    future.set_exception(error)

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._writer is not None:
            self._writer.close()
