"""The serving core: versions loaded, their batchers, the routing table, shadow traffic.

A routing change (from the routing file) is applied in three steps so that no request fails: new
versions are loaded and warmed first, then the table is swapped in one assignment, then versions no
longer routed are retired once their queues have drained.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from canaryflow.kernel.contracts.routing import RoutingConfig
from canaryflow.kernel.errors import first_error
from canaryflow.kernel.guarded_input import InputRefused, parse_yaml, read_regular_file
from inference.backend import VersionInfo
from inference.batching import BatcherConfig, BatchStats, DynamicBatcher, EmbedResult
from inference.cache import ModelCache
from inference.metrics import ServerMetrics
from inference.models import EmbeddingModel, TokenizedBatch, load_model
from inference.routing_table import RoutingTable
from inference.server_settings import InferenceSettings

if TYPE_CHECKING:
    from inference.models.weight_slots import WeightSlots

log = logging.getLogger("canaryflow.inference")

ModelLoader = Callable[[str], EmbeddingModel]


def freeze_heap() -> None:
    """Keep the loaded libraries and weights out of the garbage collector's full passes.

    torch and transformers leave millions of long-lived objects; a full collection walks them all
    and stalls the event loop for tens of milliseconds, which shows up as the p99 latency.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(7000, 20, 20)


class UnknownVersion(LookupError):
    """The version is not (or no longer) loaded in this server."""


@dataclass
class VersionRuntime:
    version: str
    uri: str
    batcher: DynamicBatcher
    info: VersionInfo


# A routing file lists a handful of versions; anything far larger is a mistake, refused unparsed.
MAX_ROUTING_FILE_BYTES = 1 << 20


def read_routing_file(path: Path) -> RoutingConfig:
    """Read and validate a routing file; blocking (call it in a thread from the event loop)."""
    try:  # the guarded reader: a regular file, bounded, UTF-8, shallow, no NaN or huge integer
        doc = parse_yaml(read_regular_file(path, MAX_ROUTING_FILE_BYTES, what="routing YAML"), str(path))
    except InputRefused as exc:
        raise ValueError(str(exc)) from exc
    try:
        return RoutingConfig.model_validate(doc)
    except ValidationError as exc:
        raise ValueError(f"{path}: {first_error(exc, 'routing')}") from exc


class ModelServer:
    def __init__(
        self,
        settings: InferenceSettings,
        metrics: ServerMetrics | None = None,
        loader: ModelLoader | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or ServerMetrics()
        self.device = settings.resolved_device()
        budget = int(settings.gpu_memory_budget_mb * 2**20) if settings.gpu_memory_budget_mb else None
        # Under a budget or a count versions move; on weight slots a move keeps the graphs (`weight_slots`,
        # imported here: it needs torch, which a server's module import does not pull in).
        self.slots: WeightSlots | None = None
        if budget is not None or settings.max_resident_versions is not None:
            from inference.models.weight_slots import WeightSlots

            self.slots = WeightSlots()
        self._loader = loader or (
            lambda uri: load_model(
                uri,
                self.device,
                settings.dtype,
                settings.tracking_uri,
                settings.cuda_graphs,
                capture_all=settings.graph_capture == "all",
                gpu_streams=settings.resolved_gpu_streams(),
                slots=self.slots,
            )
        )
        self.cache = ModelCache(budget, self._on_cache_event, self.slots, settings.max_resident_versions)
        self.metrics.watch_cache(self.cache)
        self.executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="embed")
        self.table: RoutingTable | None = None
        self.runtimes: dict[str, VersionRuntime] = {}
        self._apply_lock = asyncio.Lock()
        self._watch_task: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._model_hint = "unknown"  # model name for metrics raised while a config is applied
        self.load_error: str | None = None
        # Called after each applied routing change (the engine forwards it to its front processes).
        self.listeners: list[Callable[[RoutingConfig], None]] = []

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self.table.model if self.table else ""

    def ready(self) -> bool:
        if self.table is None:
            return False
        return all(v.version in self.runtimes for v in self.table.config.versions)

    async def apply(self, config: RoutingConfig) -> None:
        """Load what is new, swap the table, retire what is gone; raises if a new version fails."""
        async with self._apply_lock:
            self._model_hint = config.model
            loop = asyncio.get_running_loop()
            known = {v: r.uri for v, r in self.runtimes.items()}
            for routed in config.versions:
                if known.get(routed.version) == routed.uri:
                    continue
                if routed.version in known:
                    raise ValueError(f"version {routed.version}: uri changed; a version is immutable")
                model = await loop.run_in_executor(self.executor, self._load_warm, routed.version, routed.uri)
                self._add_runtime(config.model, routed.version, routed.uri, model)
            old = self.table
            self.table = RoutingTable.from_config(config)
            for routed in config.versions:
                self.metrics.routing_weight.labels(config.model, routed.version).set(routed.weight)
            wanted = {v.version for v in config.versions}
            for version in [v for v in self.runtimes if v not in wanted]:
                runtime = self.runtimes.pop(version)
                task = loop.create_task(self._retire(old.model if old else config.model, runtime))
                self._retiring.add(task)
                task.add_done_callback(self._retiring.discard)
            for listener in self.listeners:
                listener(config)
            log.info("routing applied: %s", {v.version: v.weight for v in config.versions})

    def _load_warm(self, version: str, uri: str) -> EmbeddingModel:
        """Load, place on the device through the cache (within its budget; on a weight slot if the
        model shares them) and warm up while leased, so the warm-up runs where batches will."""
        started = time.perf_counter()
        model = self._loader(uri)
        loaded = time.perf_counter()
        try:
            self.cache.add(version, model)
            with self.cache.lease(version) as placed:
                placed.warm_up()
        except BaseException:
            self.cache.remove(version)
            raise
        warm_s = time.perf_counter() - loaded
        log.info("%s: loaded in %.2f s, warmed up in %.2f s", uri, loaded - started, warm_s)
        return model

    def _add_runtime(self, model_name: str, version: str, uri: str, model: EmbeddingModel) -> None:
        cfg = BatcherConfig(
            max_batch_size=self.settings.resolved_max_batch_size(),
            max_wait_s=self.settings.max_wait_ms / 1000,
            max_queue_tokens=self.settings.max_queue_tokens,
            max_queue_wait_s=wait_ms / 1000 if (wait_ms := self.settings.max_queue_wait_ms) else None,
            concurrent_batches=self.settings.resolved_concurrent_batches(),
            pass_tokens=model.pass_tokens,
        )
        batcher = DynamicBatcher(
            lambda: self.cache.lease(version),
            self.executor,
            cfg,
            on_batch=lambda stats: self._on_batch(model_name, version, stats),
        )
        batcher.start()
        self.runtimes[version] = VersionRuntime(version, uri, batcher, VersionInfo.of(model))

    async def _retire(self, model_name: str, runtime: VersionRuntime) -> None:
        # Requests routed before the swap may still be on their way (from front processes too):
        # keep the version a grace period, then until its queue has drained.
        await asyncio.sleep(self.settings.retire_grace_s)
        for _ in range(600):
            if runtime.batcher.pending_texts == 0:
                break
            await asyncio.sleep(0.05)
        await runtime.batcher.stop()
        self.cache.remove(runtime.version)
        self.metrics.gpu_memory.labels(model_name, runtime.version, self._device_label()).set(0)
        self.metrics.routing_weight.labels(model_name, runtime.version).set(0)
        log.info("version %s retired", runtime.version)

    async def close(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
        for runtime in self.runtimes.values():
            await runtime.batcher.stop()
        for task in list(self._retiring):
            task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- routing file ----------------------------------------------------------------------------

    def watch(self, path: Path) -> None:
        self._watch_task = asyncio.get_running_loop().create_task(self._watch(path))

    async def _watch(self, path: Path) -> None:
        last = path.stat().st_mtime_ns if path.exists() else None
        while True:
            await asyncio.sleep(self.settings.routing_poll_s)
            try:
                mtime = path.stat().st_mtime_ns
            except OSError:
                continue
            if mtime == last:
                continue
            last = mtime
            try:
                # Parsed in a thread: a large or slow file must not stall the event loop (/healthz).
                config = await asyncio.get_running_loop().run_in_executor(None, read_routing_file, path)
                await self.apply(config)
                self.metrics.routing_reloads.labels("ok").inc()
            except Exception as exc:  # a bad file keeps the old routing; it must not stop serving
                self.metrics.routing_reloads.labels("error").inc()
                log.error("routing file %s not applied: %s", path, exc)

    # -- serving ---------------------------------------------------------------------------------

    @property
    def loaded(self) -> set[str]:
        return set(self.runtimes)

    def submit(self, version: str, tokens: TokenizedBatch) -> asyncio.Future[EmbedResult]:
        """Queue token ids on a version's batcher; raises UnknownVersion or QueueFull at once."""
        runtime = self.runtimes.get(version)
        if runtime is None:
            raise UnknownVersion(f"version {version} is not loaded")
        return runtime.batcher.submit(tokens)

    def info(self, version: str) -> VersionInfo | None:
        runtime = self.runtimes.get(version)
        return runtime.info if runtime else None

    def check_room(self, version: str) -> None:
        runtime = self.runtimes.get(version)
        if runtime is not None:
            runtime.batcher.check_room()

    def version_infos(self) -> dict[str, VersionInfo]:
        return {version: runtime.info for version, runtime in self.runtimes.items()}

    async def start(self, routing: RoutingConfig | None) -> None:
        """Initial load (from `routing` or the routing file), then watch the file for changes."""
        path = self.settings.routing_file
        try:
            if routing is None:
                assert path is not None
                loop = asyncio.get_running_loop()
                routing = await loop.run_in_executor(None, read_routing_file, path)
            await self.apply(routing)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("initial load failed")
            return
        freeze_heap()
        if path is not None:
            self.watch(path)

    # -- metrics hooks ---------------------------------------------------------------------------

    def _device_label(self) -> str:
        return "cuda" if self.device.startswith("cuda") else "cpu"

    def _on_batch(self, model: str, version: str, stats: BatchStats) -> None:
        m = self.metrics
        m.batch_size.labels(model, version).observe(stats.texts)
        m.forward_passes.labels(model, version).inc(stats.forward_passes)
        m.tokens.labels(model, version).inc(stats.tokens)
        m.padded_tokens.labels(model, version).inc(stats.padded_tokens)

    def _on_cache_event(self, version: str, event: str) -> None:
        model = self._model_hint
        if event == "load":
            self.metrics.model_loads.labels(model, version).inc()
        else:
            self.metrics.model_evictions.labels(model, version).inc()
        for v, held in self.cache.residency().items():
            self.metrics.gpu_memory.labels(model, v, self._device_label()).set(held)
