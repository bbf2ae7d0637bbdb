"""The prediction log: a sample of served requests written to rotated JSON Lines or Parquet files,
off the request path.

The handler only draws a random number and, for a sampled request, puts a tuple on a bounded queue
(no serialisation, no I/O, never a wait): when the queue is full the sample is dropped and counted in
`canaryflow_prediction_log_dropped`, so a slow disk can never add latency. One background thread
serialises and appends records, rotates files by size and age, removes the oldest beyond a count,
and hands every record to the window summary (`inference.prediction_summary`).

Files: `<dir>/<model>/predictions-<start unix s>-<pid>.jsonl` (one writer per process, so several
workers never share a file); records as in `canaryflow.kernel.contracts.drift.PredictionRecord`.
With `format="parquet"` the files end in `.parquet` and appear whole when closed
(`inference.prediction_parquet`); the writer thread wakes every second to close a file whose time
is up, so an idle model's last records still become readable.
A sampled request with several inputs gives one record per input (at most `MAX_INPUTS_PER_SAMPLE`),
each with its own token count.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import orjson

from canaryflow.kernel.contracts.drift import (
    JSONL_SUFFIX,
    PredictionColumn,
    model_folder_name,
    prediction_file_name,
)
from inference.metrics import ServerMetrics
from inference.prediction_records import LogFile, PredictionLogConfig, Sample, SampleSink, retain_newest
from inference.server_settings import InferenceSettings

log = logging.getLogger("canaryflow.inference.prediction_log")
MAX_INPUTS_PER_SAMPLE = 8


# The record's keys (`PredictionColumn`), as plain strings: orjson takes no enum for a key.
_T, _MODEL, _VERSION, _LATENCY_MS, _TOKENS, _EMBEDDING, _TEXT = (c.value for c in PredictionColumn)


def _json_line(s: Sample) -> bytes:
    record: dict[str, object] = {
        _T: round(s.t, 6), _MODEL: s.model, _VERSION: s.version,
        _LATENCY_MS: round(s.latency_ms, 4), _TOKENS: s.tokens,
        _EMBEDDING: s.embedding.astype(np.float32, copy=False),
    }  # fmt: skip
    if s.text is not None:
        record[_TEXT] = s.text
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)


class JsonlFile:
    """The current JSONL file of one model; a new one when it is too big or too old."""

    def __init__(self, directory: Path, config: PredictionLogConfig) -> None:
        self.directory = directory
        self.config = config
        self.handle: IO[bytes] | None = None
        self.opened_at = 0.0
        self.size = 0

    def write(self, samples: list[Sample], now: float) -> None:
        lines = b"\n".join(_json_line(s) for s in samples) + b"\n"
        if (
            self.handle is None
            or self.size >= self.config.rotate_bytes
            or now - self.opened_at >= (self.config.rotate_s)
        ):
            self._rotate(now)
        assert self.handle is not None
        self.handle.write(lines)
        self.size += len(lines)

    def tick(self, now: float) -> None:
        """Nothing to do: every line is readable once flushed; the next write rotates when due."""

    def flush(self) -> None:
        if self.handle is not None:
            self.handle.flush()

    def _rotate(self, now: float) -> None:
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / prediction_file_name(now, os.getpid(), JSONL_SUFFIX)
        self.handle = open(path, "ab")  # noqa: SIM115 - held until the next rotation
        self.opened_at, self.size = now, 0
        retain_newest(self.directory, JSONL_SUFFIX, self.config.keep_files)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class PredictionLog:
    def __init__(
        self,
        config: PredictionLogConfig,
        metrics: ServerMetrics,
        *,
        sinks: list[SampleSink] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._metrics = metrics
        self._sinks = sinks or []
        self._random = (rng or random.Random()).random
        self._clock = clock
        self._queue: queue.Queue[Sample | None] = queue.Queue(maxsize=config.queue_size)
        self._files: dict[str, LogFile] = {}
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    # -- request path: no I/O, no waiting ------------------------------------------------------------

    def maybe_record(
        self,
        model: str,
        version: str,
        latency_s: float,
        texts: list[str] | None,
        embeddings: np.ndarray,
        token_counts: Sequence[int] | np.ndarray,
    ) -> None:
        """`texts` None: the request sent token ids (no text to keep); one token count per input."""
        if self._random() >= self.config.rate:
            return
        now = self._clock()
        count = len(token_counts)
        picked: Sequence[int] = range(count)
        if count > MAX_INPUTS_PER_SAMPLE:
            picked = sorted(random.sample(range(count), MAX_INPUTS_PER_SAMPLE))
        for i in picked:
            text = texts[i] if self.config.keep_text and texts is not None else None
            tokens = int(token_counts[i])
            sample = Sample(now, model, version, latency_s * 1000.0, tokens, embeddings[i], text)
            try:
                self._queue.put_nowait(sample)
            except queue.Full:
                self._metrics.prediction_log_dropped.labels(model, version).inc()

    # -- writer thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=1.0)
            except queue.Empty:  # idle: close the files whose time is up (Parquet: they become visible)
                self._tick()
                continue
            batch = [first]
            while len(batch) < 1000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            try:
                self._write([s for s in batch if s is not None])
            except Exception:  # a full disk must not end the thread; the samples are lost, not the server
                log.exception("prediction log: a batch of %d samples was not written", len(batch))
            self._tick()  # a busy model must not keep an idle one's file open
            if stop:
                for file in self._files.values():
                    try:
                        file.close()
                    except Exception:
                        log.exception("prediction log: a file was not closed at shutdown")
                for sink in self._sinks:
                    getattr(sink, "flush", lambda: None)()
                return

    def _tick(self) -> None:
        now = self._clock()
        for file in self._files.values():
            try:
                file.tick(now)
            except Exception:
                log.exception("prediction log: a file was not closed")

    def _file(self, model: str) -> LogFile:
        file = self._files.get(model)
        if file is None:
            directory = self.config.directory / model_folder_name(model)
            if self.config.format == "parquet":
                from inference.prediction_parquet import ParquetFile  # pyarrow only when asked for

                file = ParquetFile(directory, self.config)
            else:
                file = JsonlFile(directory, self.config)
            self._files[model] = file
        return file

    def _write(self, samples: list[Sample]) -> None:
        by_model: dict[str, list[Sample]] = {}
        for s in samples:
            by_model.setdefault(s.model, []).append(s)
            for sink in self._sinks:
                sink(s)
        now = self._clock()
        for model, mine in by_model.items():
            file = self._file(model)
            file.write(mine, now)
            file.flush()
            for version in {s.version for s in samples if s.model == model}:
                count = sum(1 for s in samples if s.model == model and s.version == version)
                self._metrics.prediction_log_written.labels(model, version).inc(count)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, then stop the thread (the sentinel waits for room, bounded)."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            log.warning("prediction log: queue still full at shutdown; queued samples are lost")
            return
        self._thread.join(timeout_s)


def open_prediction_log(settings: InferenceSettings, metrics: ServerMetrics) -> PredictionLog | None:
    """The server's prediction log as its settings describe it; None when the rate is 0 (off)."""
    if settings.prediction_log_rate <= 0:
        return None
    sinks: list[SampleSink] = []
    if settings.prediction_log_summary_s > 0 and settings.tracking_uri:
        from inference.prediction_summary import MlflowRunMetrics, WindowSummary  # mlflow only when asked

        publish = MlflowRunMetrics(settings.tracking_uri)
        sinks.append(WindowSummary(settings.prediction_log_summary_s, publish))
    config = PredictionLogConfig(
        directory=settings.prediction_log_dir,
        rate=settings.prediction_log_rate,
        keep_text=settings.prediction_log_text,
        queue_size=settings.prediction_log_queue,
        rotate_bytes=int(settings.prediction_log_rotate_mb * 2**20),
        rotate_s=settings.prediction_log_rotate_s,
        keep_files=settings.prediction_log_keep_files,
        format=settings.prediction_log_format,
    )
    return PredictionLog(config, metrics, sinks=sinks)
