"""Forward passes replayed from CUDA graphs, one graph per (batch, length) shape bucket.

An eager forward pass of a small encoder launches about a hundred kernels from Python, and that
launching, not the GPU, is what caps a server's passes per second: all-MiniLM-L6-v2's GPU time for
256 sentences is well under a millisecond, its eager launch cost several. A captured graph replays
the same kernels with one call. Graphs have fixed shapes, so a chunk is padded up to the nearest
bucket (extra rows and columns are masked padding; the GPU has time to spare, the launching
interpreter does not), and chunks larger than the largest bucket run as several replays.

A model's graphs live on one or more lanes (`_Lane`: a CUDA stream, the device input buffer its
graphs read, their memory pool). With one lane (a replica: one of several processes sharing the
GPU, the default) a pass runs on the device's current stream and ends under a per-device lock, as
replicas were measured. With several (the engine process, the GPU's only user: 2 by default,
`InferenceSettings.gpu_streams`) each lane has a stream of its own, the lock is held only to queue
a pass on one (input copy, replay, output copy) and the caller waits for it outside the lock, so
the device runs the next queued pass without a gap and passes on different lanes run at once.
Moving the weights off the device (the LRU cache) invalidates the graphs, which hold their
addresses: `release` drops them and they are captured again. Versions sharing a weight slot
(`weight_slots`) keep the graphs instead: `overwrite` copies another version's weights into the
same tensors, in place, ordered between the passes on the lanes.

Capturing every bucket takes seconds per process, so a server captures only the buckets that size
the pool and that short requests hit before it is ready (`capture_common`), then the rest on a
background thread, the buckets traffic asked for first. A chunk whose bucket has no graph yet runs
the same padded pass eagerly: correct, a few milliseconds slower, and never a capture (tens of
milliseconds of GPU time with the device held) on a request's path.

Requests come before captures (`DeviceTurns`): a capture of a bucket traffic asked for waits until
no pass is waiting for the device (or at most `STARVED_S`, so a saturated server still gets its
graphs), and every other bucket waits for an idle spell (`IDLE_S` without a pass). Taking turns on a
plain lock was unfair: the capturer released it and took it again at once, and on an H200 with 8
replicas a one-client request waited a median 93 ms behind captures right after ready.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from inference.models.base import PASS_TOKENS, TokenizedBatch

if TYPE_CHECKING:
    from torch.cuda import _POOL_HANDLE

log = logging.getLogger("canaryflow.inference.graphs")

Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]

BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
LENGTH_BUCKETS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)

# A bucket traffic asked for is captured after at most this long waiting for a gap in the passes: a
# saturated replica asks for a few dozen buckets in its first seconds, each served eagerly until then.
STARVED_S = 0.2
# Every other bucket is captured only when the device had no pass for this long.
IDLE_S = 0.25
# A graph saves the interpreter's launching, nothing on the device: a bucket whose eager pass kept
# the device busy this many times longer than Python took to launch it (a large encoder's long
# passes: BERT-large at 512 tokens) is served eagerly for good. Capturing it would cost device time
# under the lock (two eager passes and a graph instantiation, tens to hundreds of milliseconds for a
# 24-layer model, while every other pass waits to be queued) and a pool as large as its activations,
# to save a launch the device never waits for. Measured on the first eager pass, with no wait of its
# own: that pass's first-use costs inflate the launch, so a borderline bucket is captured as before.
GPU_BOUND_RATIO = 4.0


class DeviceTurns:
    """One pass queued at a time per device (queuing is short; the passes run on their lanes), and
    one capture, with the passes serving requests ahead of background captures."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._count_guard = threading.Lock()
        self.waiting = 0  # request passes waiting for or holding `lock`
        self.last_pass = 0.0  # time.monotonic() when the last request pass let go of the device

    def __enter__(self) -> None:
        with self._count_guard:
            self.waiting += 1
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.last_pass = time.monotonic()
        self.lock.release()
        with self._count_guard:
            self.waiting -= 1

    def wait_for_gap(self, idle_s: float, give_up: Callable[[], bool], starved_s: float | None) -> bool:
        """Wait until no request pass is waiting and none ran for `idle_s`; False when `give_up`.

        With `starved_s`, a gap that has not come by then is taken anyway (one capture's delay)."""
        started = time.monotonic()
        while not give_up():
            now = time.monotonic()
            if self.waiting == 0 and now - self.last_pass >= idle_s:
                return True
            if starved_s is not None and now - started >= starved_s:
                return True
            time.sleep(0.002 if self.waiting else max(0.002, idle_s - (now - self.last_pass)))
        return False


_devices: dict[str, DeviceTurns] = {}
_devices_guard = threading.Lock()


# Graphs captured by this process (every model, every lane): how much capturing a benchmark's
# measured phase overlapped (`inference.metrics`, canaryflow_graph_captures_total).
_captures = 0


def captures_total() -> int:
    return _captures


def device_turns(device: str) -> DeviceTurns:
    with _devices_guard:
        return _devices.setdefault(device, DeviceTurns())


# Capturers still running at interpreter exit are stopped and joined: a thread killed in the middle
# of a capture aborts the process ("terminate called without an active exception").
_live: weakref.WeakSet[GraphedForward] = weakref.WeakSet()


@atexit.register
def _stop_capturers() -> None:
    for graphed in list(_live):
        graphed.stop_capturing(timeout_s=5.0)


@dataclass(frozen=True)
class Bucket:
    rows: int
    width: int


def length_buckets(max_length: int) -> list[int]:
    widths = [w for w in LENGTH_BUCKETS if w < max_length]
    return [*widths, max_length]


def plan_replays(lengths: np.ndarray, widths: list[int], max_tokens: int) -> list[tuple[Bucket, slice]]:
    """Split a chunk (texts sorted or not) into replays: which bucket, which rows of the chunk.

    The width is the chunk's longest text rounded up to a bucket; rows are cut into pieces of at
    most the largest batch bucket that fits `max_tokens` at that width, each rounded up to a batch
    bucket.
    """
    n = len(lengths)
    width = widths[bisect.bisect_left(widths, int(lengths.max()))]
    cap = max(b for b in BATCH_BUCKETS if b * width <= max_tokens or b == 1)
    replays = []
    for start in range(0, n, cap):
        rows = min(cap, n - start)
        bucket_rows = BATCH_BUCKETS[bisect.bisect_left(BATCH_BUCKETS, rows)]
        replays.append((Bucket(bucket_rows, width), slice(start, start + rows)))
    return replays


class _Lane:
    """One CUDA stream with its own input buffer, graphs and graph memory pool.

    Passes on one lane run in stream order, so a pass may be queued behind the one before it
    without waiting for it: the next pass's input copy lands only after the last one's replay read
    the buffer, and its replay only after the last output was copied out. Passes on different lanes
    run at once on the device (the weights are only read); graphs of one pool must not, hence a
    pool per lane.
    """

    def __init__(self, device: torch.device, size: int, stream: torch.cuda.Stream | None = None) -> None:
        self.stream = stream if stream is not None else torch.cuda.Stream(device)
        self.inputs = torch.empty(size, dtype=torch.int64, device=device)
        # Graphs are captured on the lane's own stream: cuBLAS keeps a workspace per (handle,
        # stream) and a graph keeps the one it was captured with, so graphs of two lanes captured
        # on one stream would share a workspace and corrupt each other's results when replayed at
        # once.
        self.capture_stream = torch.cuda.Stream(device)
        self.graphs: dict[Bucket, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.pool: _POOL_HANDLE | None = None
        # Set by `GraphedForward.overwrite`: the lane's next pass (or capture) waits for it first.
        self.weights: torch.cuda.Event | None = None

    def wait_for_weights(self, stream: torch.cuda.Stream) -> None:
        """Under the device lock: queue `stream`'s next work after a pending weight copy."""
        if self.weights is not None:
            stream.wait_event(self.weights)
            self.weights = None


def pick_lane(has_graph: list[bool], turn: int) -> int:
    """The lane for a pass: the next one in turn among those holding the bucket's graph, else the
    next one in turn (the pass runs eagerly there)."""
    lanes = len(has_graph)
    for step in range(lanes):
        lane = (turn + step) % lanes
        if has_graph[lane]:
            return lane
    return turn % lanes


class GraphedForward:
    """Captures and replays one model's forward pass per shape bucket, on one or more lanes."""

    def __init__(
        self,
        forward: Forward,
        device: str,
        dimension: int,
        max_length: int,
        pad_id: int,
        use_type_ids: bool,
        max_tokens: int = PASS_TOKENS,
        lanes: int = 1,
    ) -> None:
        self._forward = forward
        self._device = torch.device(device)
        self._turns = device_turns(str(self._device))
        self._lock = self._turns.lock
        self._pad_id = pad_id
        self._planes = 3 if use_type_ids else 2
        self._dimension = dimension
        self.widths = length_buckets(max_length)
        self.max_tokens = max(max_tokens, max_length)
        # Device memory the captured graphs' private pools took (counted in the cache's budget).
        self.pool_bytes = 0
        # Each lane's device buffer every graph of it reads, and host staging: pinned (the copies
        # are asynchronous) and per thread, so one batch is padded while another is on the device.
        # A bucket's planes lie contiguous at the start of each buffer, so one copy moves them.
        self._size = self._planes * self.max_tokens
        self._local = threading.local()
        # One lane keeps the replicas' measured path: the current stream, the pass awaited under the
        # lock. Several lanes queue only under it (`run`).
        count = max(1, lanes)
        self._queue_only = count > 1
        default = None if self._queue_only else torch.cuda.current_stream(self._device)
        self._lanes = [_Lane(self._device, self._size, default) for _ in range(count)]
        self._copier: torch.cuda.Stream | None = None  # weight copies (`overwrite`)
        self._turn = 0
        # Background capture: buckets asked for by traffic first, then every other one. A release
        # bumps the generation, which stops a capturer working for the old weights.
        self._wanted: list[Bucket] = []
        self._capturer: threading.Thread | None = None
        self._generation = 0
        self._capture_guard = threading.Lock()
        self._failed: set[Bucket] = set()
        self._eager: set[Bucket] = set()  # GPU-bound buckets, served eagerly (GPU_BOUND_RATIO)
        _live.add(self)

    @property
    def lanes(self) -> int:
        return len(self._lanes)

    def captured(self, bucket: Bucket) -> bool:
        """Whether every lane replays `bucket` from a graph."""
        return all(bucket in lane.graphs for lane in self._lanes)

    def captured_count(self) -> int:
        """Buckets every lane has a graph for."""
        return sum(1 for bucket in self._lanes[0].graphs if self.captured(bucket))

    def _features(self, lane: _Lane, bucket: Bucket) -> dict[str, torch.Tensor]:
        size = self._planes * bucket.rows * bucket.width
        planes = lane.inputs[:size].view(self._planes, bucket.rows, bucket.width)
        features = {"input_ids": planes[0], "attention_mask": planes[1]}
        if self._planes == 3:
            features["token_type_ids"] = planes[2]
        return features

    def _pad(self, batch: TokenizedBatch, bucket: Bucket) -> torch.Tensor:
        """The bucket's input planes in this thread's pinned staging buffer."""
        staging = getattr(self._local, "staging", None)
        if staging is None:
            staging = self._local.staging = torch.empty(self._size, dtype=torch.int64, pin_memory=True)
        size = self._planes * bucket.rows * bucket.width
        host = staging[:size].view(self._planes, bucket.rows, bucket.width).numpy()
        batch.pad_into(host[0], host[1], host[2] if self._planes == 3 else None, self._pad_id)
        return staging[:size]

    def _receiver(self) -> tuple[torch.Tensor, torch.cuda.Event]:
        """This thread's pinned output rows and the event its passes end on."""
        receiver = getattr(self._local, "receiver", None)
        if receiver is None:
            rows = max(BATCH_BUCKETS)
            out = torch.empty((rows, self._dimension), dtype=torch.float32, pin_memory=True)
            receiver = self._local.receiver = (out, torch.cuda.Event(blocking=True))  # no spinning
        return receiver

    def _capture(self, lane: _Lane, bucket: Bucket) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """Capture `bucket` on `lane`, under the device lock, without stopping the device.

        `torch.cuda.graph` synchronises the whole device and empties the allocator's caches
        before every capture: harmless once before ready, but a server captures most buckets in
        the background while it serves (and again after a version comes back to the device), and
        each of those stalls would stop every pass in flight. Here the capture is ordered by
        streams instead: the dummy input is written on the device after the lane's queued passes
        have read its buffer, and the lane's next pass waits for the capture.

        The warm-up passes run on the lane's capture stream too, the same stream for every capture
        of the lane: the allocator keeps a freed block (and cuBLAS a workspace) for the stream it
        was used on, and a new side stream per capture (PyTorch hands out a pool of 32 in turn)
        left a warm-up's activations cached on each of them.
        """
        stream = lane.capture_stream
        stream.wait_stream(lane.stream)  # the lane's passes queued so far have read its buffer
        if lane.weights is not None:  # the warm-up passes below read the weights (the lane's own
            stream.wait_event(lane.weights)  # next pass still waits for them: a capture may fail)
        features = self._features(lane, bucket)
        with torch.cuda.stream(stream):
            features["input_ids"].fill_(self._pad_id + 1)
            features["attention_mask"].fill_(1)
            if "token_type_ids" in features:
                features["token_type_ids"].fill_(0)
            for _ in range(2):  # library workspaces and lazy inits happen outside the capture
                self._forward(features)
        if lane.pool is None:
            lane.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # Captures are serialised under the device lock, so what the allocator reserved meanwhile
        # is this graph's share of the pool.
        reserved = torch.cuda.memory_reserved(self._device)
        with torch.cuda.stream(stream):
            graph.capture_begin(lane.pool, capture_error_mode="thread_local")
            try:
                output = self._forward(features).float()
            finally:
                graph.capture_end()
        self.pool_bytes += max(0, torch.cuda.memory_reserved(self._device) - reserved)
        global _captures
        _captures += 1  # under the device lock: one capture at a time per device
        lane.stream.wait_stream(stream)  # the lane's next pass comes after the capture
        return graph, output

    def capture(self, bucket: Bucket) -> None:
        with self._lock, torch.inference_mode():
            for lane in self._lanes:
                if bucket not in lane.graphs:
                    lane.graphs[bucket] = self._capture(lane, bucket)

    def buckets(self) -> list[Bucket]:
        """Every bucket, largest first (so the shared pool is sized by the first capture)."""
        fitting = [
            Bucket(rows, width)
            for width in self.widths
            for rows in BATCH_BUCKETS
            if rows * width <= self.max_tokens or rows == 1
        ]
        return sorted(fitting, key=lambda b: b.rows * b.width, reverse=True)

    def capture_all(self) -> None:
        for bucket in self.buckets():
            self.capture(bucket)
        self._release_cache()
        log.info("captured %d CUDA graphs on %d lanes", self.captured_count(), self.lanes)

    def _release_cache(self) -> None:
        """Every bucket has its graph: hand the allocator's unused cache back to the device.

        Before a bucket's graph exists its passes run eagerly on a lane's stream, and each capture
        runs two warm-up passes on the lane's capture stream; the activations they freed stay
        cached for the stream they ran on, up to a largest pass's worth per stream, and no graphed
        pass asks for them again (graphs allocate from their own pools). Kept, they showed as GPU
        memory in use that grew with traffic after ready. Freeing waits for the device, so it is
        done once, under the device lock, when the last graph is captured."""
        with self._lock:
            torch.cuda.empty_cache()

    def capture_common(self) -> None:
        """Before ready: the largest bucket (which sizes each pool, so later captures fit in it)
        and the small ones short requests hit first; every other bucket on a background thread."""
        started = time.monotonic()
        buckets = self.buckets()
        common = [b for b in buckets if b.width <= 32 and b.rows in (1, 8, 32)]
        for bucket in [buckets[0], *common]:
            self.capture(bucket)
        count = self.captured_count()
        log.info("captured %d CUDA graphs on %d lanes in %.1f s; the other %d in the background", count,
                 self.lanes, time.monotonic() - started, len(buckets) - count)  # fmt: skip
        self._capture_later(None)

    def _capture_later(self, bucket: Bucket | None) -> None:
        """Ask the background capturer for `bucket` (first) and then every missing bucket."""
        with self._capture_guard:
            if bucket is not None and bucket not in self._wanted:
                self._wanted.append(bucket)
            if self._capturer is None or not self._capturer.is_alive():
                generation = self._generation
                self._capturer = threading.Thread(
                    target=self._capture_missing, args=(generation,), name="graph-capture", daemon=True
                )
                self._capturer.start()

    def _capture_missing(self, generation: int) -> None:
        rest = sorted(self.buckets(), key=lambda b: b.rows * b.width)

        def missing(bucket: Bucket) -> bool:
            return not self.captured(bucket) and bucket not in self._failed and bucket not in self._eager

        while generation == self._generation:
            with self._capture_guard:
                wanted = [b for b in self._wanted if missing(b)]
                self._wanted = wanted
            pending = [b for b in (*wanted, *rest) if missing(b)]
            if not pending:
                self._release_cache()
                log.info("captured %d CUDA graphs on %d lanes", self.captured_count(), self.lanes)
                return
            bucket = pending[0]
            if not self._wait_turn(generation, asked=bucket in wanted):
                if generation != self._generation:
                    return
                continue
            with self._lock, torch.inference_mode():
                if generation != self._generation:
                    return
                lane = next((lane for lane in self._lanes if bucket not in lane.graphs), None)
                if lane is None:  # captured meanwhile (e.g. by `capture`)
                    continue
                try:
                    lane.graphs[bucket] = self._capture(lane, bucket)
                except RuntimeError as exc:  # served eagerly from now on, not retried on every request
                    self._failed.add(bucket)
                    log.warning("CUDA graph for %s not captured (%s): served eagerly", bucket, exc)

    def _wait_turn(self, generation: int, asked: bool) -> bool:
        """The capturer's turn on the device; False when its generation ended or, while it waited
        for an idle spell, traffic asked for a bucket (which goes first)."""

        def stop_waiting() -> bool:
            return generation != self._generation or (not asked and bool(self._wanted))

        if asked:
            return self._turns.wait_for_gap(0.0, stop_waiting, STARVED_S)
        return self._turns.wait_for_gap(IDLE_S, stop_waiting, None)

    def run(self, batch: TokenizedBatch) -> np.ndarray:
        """Embed a chunk: replayed where its bucket's graph exists, else the same pass run eagerly
        while the background capturer is asked for that bucket.

        On several lanes the device lock is held only to queue a pass (input copy, replay, output
        copy); the wait for its end is outside it, so the next pass is queued while this one runs
        and the device goes from one to the next without a gap. On one lane the pass ends under the
        lock."""
        received, done = self._receiver()
        out = np.empty((len(batch), self._dimension), dtype=np.float32)
        for bucket, rows in plan_replays(batch.lengths, self.widths, self.max_tokens):
            whole = rows.start == 0 and rows.stop == len(batch)
            part = batch if whole else batch.take(np.arange(rows.start, rows.stop))
            n = len(part)
            padded = self._pad(part, bucket)
            with self._turns, torch.inference_mode():
                self._turn += 1
                lane = self._lanes[pick_lane([bucket in ln.graphs for ln in self._lanes], self._turn)]
                captured = lane.graphs.get(bucket)
                timed = captured is None and bucket not in self._eager and bucket not in self._failed
                with torch.cuda.stream(lane.stream):
                    lane.wait_for_weights(lane.stream)
                    lane.inputs[: padded.numel()].copy_(padded, non_blocking=True)
                    if captured is not None:
                        captured[0].replay()
                        output = captured[1]
                    else:
                        started, ended = self._timer()
                        if timed:
                            started.record(lane.stream)
                        launch_s = time.perf_counter()
                        output = self._forward(self._features(lane, bucket)).float()
                        launch_s = time.perf_counter() - launch_s
                        if timed:
                            ended.record(lane.stream)
                    received[:n].copy_(output[:n], non_blocking=True)
                    done.record(lane.stream)
                if not self._queue_only:
                    done.synchronize()
            done.synchronize()  # (on one lane, already over)
            out[rows] = received[:n].numpy()
            if timed:
                self._capture_or_not(bucket, started.elapsed_time(ended) / 1000, launch_s)
        return out

    def _timer(self) -> tuple[torch.cuda.Event, torch.cuda.Event]:
        """This thread's pair of timing events for an eager pass."""
        timer = getattr(self._local, "timer", None)
        if timer is None:
            timer = self._local.timer = (
                torch.cuda.Event(enable_timing=True),
                torch.cuda.Event(enable_timing=True),
            )
        return timer

    def _capture_or_not(self, bucket: Bucket, device_s: float, launch_s: float) -> None:
        """After a bucket's first eager pass: ask for its graph, or serve it eagerly for good when the
        device, not the launching, is what that pass waited on (GPU_BOUND_RATIO)."""
        if device_s >= GPU_BOUND_RATIO * launch_s:
            self._eager.add(bucket)
            log.info("%dx%d served eagerly: its pass kept the device busy %.1f ms, launching it took %.1f ms",
                     bucket.rows, bucket.width, device_s * 1e3, launch_s * 1e3)  # fmt: skip
        else:
            self._capture_later(bucket)

    def overwrite(self, targets: Sequence[torch.Tensor], sources: Sequence[torch.Tensor]) -> None:
        """Copy `sources` (a version's weights, pinned host memory) into `targets` (the tensors the
        graphs read), in place and without waiting for the device.

        Under the device lock: the copy is queued on a stream of its own after everything queued so
        far on every lane (passes, and captures' warm-up passes, which read the old values), and
        each lane's next pass (or capture) waits for it (`_Lane.wait_for_weights`). Only this
        model's next passes wait: a replica's one lane is the device's current stream, shared by
        every model, and a wait queued on it now would hold every other model's passes behind the
        copy (tens of milliseconds for a large encoder)."""
        with self._turns, torch.no_grad():
            if self._copier is None:
                self._copier = torch.cuda.Stream(self._device)
            copier = self._copier
            for lane in self._lanes:
                copier.wait_stream(lane.stream)
                copier.wait_stream(lane.capture_stream)
                if lane.weights is not None:  # an earlier copy no pass waited for yet
                    copier.wait_event(lane.weights)
            with torch.cuda.stream(copier):
                for target, source in zip(targets, sources, strict=True):
                    target.copy_(source, non_blocking=True)
            done = torch.cuda.Event()
            done.record(copier)
            for lane in self._lanes:
                lane.weights = done

    def after_weights(self, stream: torch.cuda.Stream) -> None:
        """Queue `stream`'s next work (an eager pass outside the lanes: the warm-up's check) after
        a weight copy no lane has waited for yet."""
        with self._lock:
            for lane in self._lanes:
                if lane.weights is not None:
                    stream.wait_event(lane.weights)

    def stop_capturing(self, timeout_s: float) -> None:
        with self._capture_guard:
            self._generation += 1
            capturer = self._capturer
        if capturer is not None and capturer is not threading.current_thread():
            capturer.join(timeout_s)

    def release(self) -> None:
        """Drop the graphs (the weights are about to move). On several lanes a pass queued before
        may still be running on the device, reading these weights and replaying these graphs: the
        lanes are drained first, or the weights' memory would be handed out again (or a graph
        destroyed) under a running pass."""
        with self._lock:
            self._generation += 1
            if self._copier is not None:
                self._copier.synchronize()
            for lane in self._lanes:
                lane.stream.synchronize()
                lane.capture_stream.synchronize()
                lane.graphs.clear()
                lane.pool = None
                lane.weights = None
            self.pool_bytes = 0
