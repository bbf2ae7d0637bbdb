"""The serving core: versions loaded, their batchers, the routing table, shadow traffic.

A routing change (from the routing file) is applied in three steps so that no request fails: new
versions are loaded and warmed first, then the table is swapped in one assignment, then versions no
longer routed are retired once their queues have drained.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from pydantic import ValidationError

from canaryflow.core.routing import RoutingConfig
from inference.batching import BatcherConfig, BatchStats, DynamicBatcher, EmbedResult
from inference.cache import ModelCache
from inference.metrics import ServerMetrics
from inference.models import EmbeddingModel, load_model
from inference.router import RoutingTable
from inference.settings import InferenceSettings

log = logging.getLogger("canaryflow.inference")

ModelLoader = Callable[[str], EmbeddingModel]


class UnknownModel(LookupError):
    pass


@dataclass
class VersionRuntime:
    version: str
    uri: str
    batcher: DynamicBatcher


def read_routing_file(path: Path) -> RoutingConfig:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read routing YAML ({exc})") from exc
    try:
        return RoutingConfig.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "routing"
        raise ValueError(f"{path}: {where}: {first['msg']}") from exc


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
        self._loader = loader or (
            lambda uri: load_model(uri, self.device, settings.dtype, settings.tracking_uri)
        )
        budget = int(settings.gpu_memory_budget_mb * 2**20) if settings.gpu_memory_budget_mb else None
        self.cache = ModelCache(budget, self._on_cache_event)
        self.executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="embed")
        self.table: RoutingTable | None = None
        self.runtimes: dict[str, VersionRuntime] = {}
        self._apply_lock = asyncio.Lock()
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._watch_task: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._model_hint = "unknown"  # model name for metrics raised while a config is applied

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
                model = await loop.run_in_executor(self.executor, self._load_warm, routed.uri)
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
            log.info("routing applied: %s", {v.version: v.weight for v in config.versions})

    def _load_warm(self, uri: str) -> EmbeddingModel:
        model = self._loader(uri)
        model.warm_up()
        return model

    def _add_runtime(self, model_name: str, version: str, uri: str, model: EmbeddingModel) -> None:
        self.cache.add(version, model)
        cfg = BatcherConfig(
            max_batch_size=self.settings.max_batch_size,
            max_wait_s=self.settings.max_wait_ms / 1000,
            max_queue=self.settings.max_queue,
            concurrent_batches=self.settings.concurrent_batches,
            truncate=self.settings.truncate,
        )
        batcher = DynamicBatcher(
            lambda: self.cache.lease(version),
            self.executor,
            cfg,
            on_batch=lambda stats: self._on_batch(model_name, version, stats),
        )
        batcher.start()
        self.runtimes[version] = VersionRuntime(version, uri, batcher)

    async def _retire(self, model_name: str, runtime: VersionRuntime) -> None:
        # Requests routed before the swap still hold this batcher: let them finish first.
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
        for task in list(self._shadow_tasks) + list(self._retiring):
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
                await self.apply(read_routing_file(path))
                self.metrics.routing_reloads.labels("ok").inc()
            except Exception as exc:  # a bad file keeps the old routing; it must not stop serving
                self.metrics.routing_reloads.labels("error").inc()
                log.error("routing file %s not applied: %s", path, exc)

    # -- serving ---------------------------------------------------------------------------------

    def route(self, model: str, sticky_key: str | None) -> VersionRuntime:
        table = self.table
        if table is None:
            raise UnknownModel("no model loaded yet")
        name, _, pinned = model.partition("/")
        if name != table.model:
            raise UnknownModel(f"model {model!r} is not served here (serving {table.model!r})")
        version = pinned or table.choose(sticky_key)
        runtime = self.runtimes.get(version)
        if runtime is None:
            raise UnknownModel(f"model {model!r}: version {version} is not served here")
        return runtime

    def maybe_shadow(self, served: str, texts: list[str], result: EmbedResult) -> None:
        table = self.table
        if table is None or not table.config.shadow.enabled or table.role_of(served) != "baseline":
            return
        if random.random() >= table.config.shadow.sample_rate:
            return
        canary = table.version_with_role("canary")
        runtime = self.runtimes.get(canary or "")
        if canary is None or runtime is None:
            return
        counter = self.metrics.shadow_requests
        if len(self._shadow_tasks) >= self.settings.shadow_max_in_flight:
            counter.labels(table.model, canary, "dropped").inc()
            return
        try:
            future = runtime.batcher.submit(texts)
        except Exception:
            counter.labels(table.model, canary, "dropped").inc()
            return
        task = asyncio.get_running_loop().create_task(
            self._compare(table.model, served, canary, result.embeddings, future)
        )
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _compare(
        self,
        model: str,
        baseline: str,
        canary: str,
        base: np.ndarray,
        future: asyncio.Future[EmbedResult],
    ) -> None:
        try:
            other = (await future).embeddings
        except Exception:
            self.metrics.shadow_requests.labels(model, canary, "error").inc()
            return
        self.metrics.shadow_requests.labels(model, canary, "ok").inc()
        histogram = self.metrics.shadow_distance.labels(model, canary, baseline)
        for d in cosine_distances(base, other):
            histogram.observe(float(d))

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


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = np.sum(a * b, axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.clip(1.0 - num / np.maximum(den, 1e-12), 0.0, 2.0)
