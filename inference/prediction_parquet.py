"""The prediction log's Parquet files: the same records as the JSONL files, columnar, a fraction of the
size on disk and read back several times faster (bench/prediction_log.py measures both).

A file is only visible when it is complete: rows go to `predictions-<start>-<pid>.parquet.tmp` in row
groups of `row_group_rows`, and the file is renamed to `predictions-<start>-<pid>.parquet` (one atomic
`os.replace`) when it is closed: at rotation (size or age, checked by the writer thread even when no
request comes), when an embedding of another size arrives, and at shutdown. Readers only look at
`*.parquet`, so they never see a half-written file, and a crash leaves at most the `.tmp` file, which
they ignore. The price of that is freshness: a record is readable once its file closes, so
`rotate_s` bounds how late the drift monitor sees it (docs/monitoring.md).

Columns and their types: `canaryflow.kernel.contracts.drift.PARQUET_TYPES` (the reader,
`canaryflow.adapters.predictions.parquet`, casts to the same), the embedding a fixed-size list of
`dims` values.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from canaryflow.kernel.contracts.drift import (
    PARQUET_SUFFIX,
    PARQUET_TYPES,
    TEMP_SUFFIX,
    PredictionColumn,
    prediction_file_name,
)
from inference.prediction_records import PredictionLogConfig, Sample, retain_newest

COMPRESSION = "zstd"


def parquet_schema(dims: int) -> pa.Schema:
    return pa.schema([(column.value, _arrow_type(column, dims)) for column in PARQUET_TYPES])


def _arrow_type(column: PredictionColumn, dims: int) -> pa.DataType:
    kind = pa.type_for_alias(PARQUET_TYPES[column])
    return pa.list_(kind, dims) if column is PredictionColumn.EMBEDDING else kind


def samples_table(samples: list[Sample], dims: int) -> pa.Table:
    """One row group's columns; the embeddings are copied once into one buffer of the contract's type."""
    schema = parquet_schema(dims)
    arrays = []
    for column in PARQUET_TYPES:
        kind = schema.field(column.value).type
        if column is PredictionColumn.EMBEDDING:
            values = kind.value_type
            flat = np.stack([s.embedding for s in samples]).astype(values.to_pandas_dtype(), copy=False)
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel(), values), dims))
        else:
            arrays.append(pa.array([getattr(s, column.value) for s in samples], kind))
    return pa.Table.from_arrays(arrays, schema=schema)


class ParquetFile:
    """The current Parquet file of one model, written under a temporary name until it is closed."""

    def __init__(self, directory: Path, config: PredictionLogConfig) -> None:
        self.directory = directory
        self.config = config
        self.writer: pq.ParquetWriter | None = None
        self.final: Path | None = None
        self.dims = 0
        self.opened_at = 0.0
        self.size = 0
        self.pending: list[Sample] = []

    def write(self, samples: list[Sample], now: float) -> None:
        for sample in samples:
            dims = int(sample.embedding.shape[0])
            if self.writer is None or dims != self.dims or self._due(now):
                self.close()
                self._open(now, dims)
            self.pending.append(sample)
            if len(self.pending) >= self.config.row_group_rows:
                self._write_group()

    def _due(self, now: float) -> bool:
        return self.size >= self.config.rotate_bytes or now - self.opened_at >= self.config.rotate_s

    def tick(self, now: float) -> None:
        """Close (publish) a file whose time is up even when no new sample comes to rotate it."""
        if self.writer is not None and self._due(now):
            self.close()

    def flush(self) -> None:
        """Nothing to do: rows wait for a full row group; what is pending is written on close."""

    def _open(self, now: float, dims: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.final = self.directory / prediction_file_name(now, os.getpid(), PARQUET_SUFFIX)
        self.writer = pq.ParquetWriter(self._temp(self.final), parquet_schema(dims), compression=COMPRESSION)
        self.dims, self.opened_at, self.size = dims, now, 0

    @staticmethod
    def _temp(final: Path) -> Path:
        return final.with_name(final.name + TEMP_SUFFIX)

    def _write_group(self) -> None:
        if not self.pending or self.writer is None or self.final is None:
            return
        try:
            self.writer.write_table(samples_table(self.pending, self.dims), row_group_size=len(self.pending))
        finally:  # a failed row group is lost (as a failed JSONL batch is), not retried without end
            self.pending = []
        self.size = self._temp(self.final).stat().st_size

    def close(self) -> None:
        if self.writer is None or self.final is None:
            return
        try:
            self._write_group()
        finally:
            self.writer.close()
            self.writer, self.pending = None, []
        os.replace(self._temp(self.final), self.final)  # the whole file appears at once
        self._retain()

    def _retain(self) -> None:
        retain_newest(self.directory, PARQUET_SUFFIX, self.config.keep_files)
