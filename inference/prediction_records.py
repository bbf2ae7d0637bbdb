"""The prediction log's own records: what the request path hands the writer thread (`Sample`), how the
log is configured, what each file format implements (`LogFile`) and the retention both apply.

They live apart from the log (`inference.prediction_log`) so that the files it writes
(`inference.prediction_parquet`) and the sinks it feeds (`inference.prediction_summary`) can use
them without importing the log back: the modules depend one way, log -> formats and sinks -> records.
The on-disk record is `canaryflow.kernel.contracts.drift.PredictionRecord`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from canaryflow.kernel.contracts.drift import (
    PredictionLogFormat,
    prediction_file_start,
    process_files_glob,
)


@dataclass(frozen=True)
class PredictionLogConfig:
    directory: Path
    rate: float  # fraction of requests sampled, per version
    keep_text: bool = False
    queue_size: int = 10_000
    rotate_bytes: int = 64 * 2**20
    rotate_s: float = 3600.0
    keep_files: int = 240  # per model and process; the oldest beyond it are removed
    format: PredictionLogFormat = "jsonl"
    row_group_rows: int = 8192  # parquet: rows buffered per row group (8192 x 384 float32 = 12 MiB)


@dataclass(frozen=True, slots=True)
class Sample:
    t: float
    model: str
    version: str
    latency_ms: float
    tokens: int
    embedding: np.ndarray
    text: str | None


SampleSink = Callable[[Sample], None]


def retain_newest(directory: Path, suffix: str, keep: int) -> None:
    """Remove this process's oldest files of one format beyond `keep` (the newest are kept)."""
    mine = sorted(
        directory.glob(process_files_glob(os.getpid(), suffix)), key=lambda p: prediction_file_start(p.name)
    )
    for old in mine[: max(0, len(mine) - keep)]:
        old.unlink(missing_ok=True)


class LogFile(Protocol):
    """The current file of one model, in one format."""

    def write(self, samples: list[Sample], now: float) -> None: ...
    def tick(self, now: float) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
