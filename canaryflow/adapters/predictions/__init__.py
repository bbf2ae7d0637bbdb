"""Prediction-log readers, one file per backend, found by name (`BACKENDS`).

`local` (the default) reads a directory in both formats the inference server writes, each file by its
extension, so switching a server's `--prediction-log-format` loses nothing; `read_records` does the
same for one file (reference files, `canaryflow monitor replay`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import chain
from pathlib import Path

from canaryflow.adapters.predictions.common import PredictionLogError, RangeReader
from canaryflow.adapters.predictions.jsonl import JsonlDirectoryReader, read_jsonl
from canaryflow.adapters.predictions.parquet import ParquetDirectoryReader, read_parquet
from canaryflow.kernel.contracts.drift import JSONL_SUFFIX, PARQUET_SUFFIX, PredictionRecord
from canaryflow.kernel.ports import PredictionLogReader

__all__ = [
    "BACKENDS",
    "JsonlDirectoryReader",
    "LocalDirectoryReader",
    "ParquetDirectoryReader",
    "PredictionLogError",
    "read_jsonl",
    "read_parquet",
    "read_records",
    "reader_for",
]

FILE_READERS: dict[str, Callable[[Path], list[PredictionRecord]]] = {
    JSONL_SUFFIX: read_jsonl,
    PARQUET_SUFFIX: read_parquet,
}


def read_records(path: Path) -> list[PredictionRecord]:
    """Every record of one prediction-log file, read by its extension (.jsonl or .parquet)."""
    reader = FILE_READERS.get(Path(path).suffix)
    if reader is None:
        known = " or ".join(FILE_READERS)
        raise PredictionLogError(f"{path}: not a prediction-log file (the name must end in {known})")
    return reader(Path(path))


class LocalDirectoryReader(RangeReader):
    """A prediction-log directory holding JSONL files, Parquet files or both."""

    def __init__(self, directory: Path) -> None:
        self.jsonl = JsonlDirectoryReader(directory)
        self.parquet = ParquetDirectoryReader(directory)

    @property
    def skipped(self) -> int:
        return self.jsonl.skipped + self.parquet.skipped

    def records(
        self, model: str, start: float, end: float, version: str | None
    ) -> Iterator[PredictionRecord]:
        return chain(
            self.jsonl.records(model, start, end, version), self.parquet.records(model, start, end, version)
        )

    def follow(self, model: str, since: float | None = None) -> list[PredictionRecord]:
        return self.jsonl.follow(model, since) + self.parquet.follow(model, since)


BACKENDS: dict[str, Callable[[Path], PredictionLogReader]] = {
    "local": LocalDirectoryReader,
    "jsonl": JsonlDirectoryReader,
    "parquet": ParquetDirectoryReader,
}


def reader_for(backend: str, location: Path) -> PredictionLogReader:
    if backend not in BACKENDS:
        known = ", ".join(BACKENDS)
        raise ValueError(f"backend: unknown prediction-log backend {backend!r} (known: {known})")
    return BACKENDS[backend](location)
