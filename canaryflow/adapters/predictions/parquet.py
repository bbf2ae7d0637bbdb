"""The local Parquet prediction log, as the inference server writes it with
`--prediction-log-format parquet`: `<dir>/<model>/predictions-<start unix s>-<pid>.parquet`.

A `.parquet` file is complete by construction (the server writes `<name>.parquet.tmp` and renames it
when closed), so `follow` reads each new file once, whole, and never looks at `.tmp` files. A file
that still cannot be read (truncated, another schema) is skipped and counted (`skipped`) by the
directory reader, and named in the error of `read_parquet`. A time range is pushed down to the row
groups' statistics, so reading a reference window does not decode the rest of the day.

Records are built without a per-value validation: the columns are cast to the contract's types once
(`PARQUET_TYPES`, the writer's: `inference.prediction_parquet`; any integer `tokens` column reads, as
does an embedding of any float type) and the rows breaking a bound of `PredictionRecord` (negative
time, latency or tokens; empty model or version) are dropped as a vector.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from canaryflow.adapters.predictions.common import (
    PredictionLogError,
    RangeReader,
    files_of,
    without_cycle_collection,
)
from canaryflow.kernel.contracts.drift import (
    PARQUET_FILE_GLOB,
    PARQUET_TYPES,
    PredictionColumn,
    PredictionRecord,
)
from canaryflow.kernel.guarded_input import InputRefused, one_line, open_regular_file

C = PredictionColumn
_SCALARS: dict[str, pa.DataType] = {
    column.value: pa.type_for_alias(alias)
    for column, alias in PARQUET_TYPES.items()
    if column not in (C.EMBEDDING, C.TEXT)
}
_TEXT = pa.type_for_alias(PARQUET_TYPES[C.TEXT])
_EMBEDDING_VALUES = pa.type_for_alias(PARQUET_TYPES[C.EMBEDDING]).to_pandas_dtype()


def _load(path: Path, filters: list[tuple[str, str, Any]] | None = None) -> pa.Table:
    """The table of a regular file (a named pipe is refused, not waited on); pyarrow's multi-line
    messages of a corrupted page put on one line."""
    try:
        with open_regular_file(path) as handle:
            return pq.read_table(handle, filters=filters)
    except InputRefused as exc:
        raise PredictionLogError(str(exc)) from exc
    except (OSError, pa.ArrowException) as exc:
        raise PredictionLogError(f"{path}: not a readable Parquet file ({one_line(exc)})") from exc


@without_cycle_collection
def _records(table: pa.Table, where: str) -> tuple[list[PredictionRecord], int]:
    """The table's rows as records, and how many rows broke a bound (dropped)."""
    columns: dict[str, Any] = {}
    for name, kind in _SCALARS.items():
        if name not in table.column_names:
            raise PredictionLogError(f"{where}: {name}: column missing")
        try:
            columns[name] = table.column(name).cast(kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise PredictionLogError(f"{where}: {name}: not {kind} ({exc})") from exc
    if C.EMBEDDING not in table.column_names:
        raise PredictionLogError(f"{where}: embedding: column missing")
    embedding = table.column(C.EMBEDDING).combine_chunks()
    if not pa.types.is_fixed_size_list(embedding.type) or not pa.types.is_floating(embedding.type.value_type):
        raise PredictionLogError(f"{where}: embedding: not a fixed-size list of floats ({embedding.type})")
    dims = embedding.type.list_size
    good = embedding.is_valid()
    for name in (C.T, C.LATENCY_MS, C.TOKENS):
        good = pc.and_(good, pc.greater_equal(columns[name], 0))
    for name in (C.MODEL, C.VERSION):
        good = pc.and_(good, pc.greater(pc.utf8_length(columns[name]), 0))
    good = pc.fill_null(good, False)
    if isinstance(good, pa.ChunkedArray):  # the scalar columns are chunked; the embedding is one array
        good = good.combine_chunks()
    if dims == 0:
        return [], table.num_rows
    values = embedding.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    # A NaN or infinite component (or a null one) makes a vector no point at all: such rows are out of
    # bounds, as the JSON Lines reader refuses them; NaN would otherwise pass every drift test.
    if len(values) == len(embedding) * dims:
        finite = np.isfinite(values).reshape(-1, dims).all(axis=1)
    else:  # a null vector has no values in the flattened array: row by row (null: dropped already)
        rows = embedding.to_pylist()
        finite = np.array([v is None or bool(np.isfinite(np.asarray(v, float)).all()) for v in rows])
    good = pc.and_(good, pa.array(finite))
    kept = int(pc.sum(good).as_py() or 0)
    if kept == 0:
        return [], table.num_rows
    values = embedding.filter(good).flatten().to_numpy(zero_copy_only=False)
    values = values.astype(_EMBEDDING_VALUES, copy=False)
    vectors = values.reshape(kept, dims).tolist()
    text = table.column(C.TEXT).cast(_TEXT) if C.TEXT in table.column_names else None
    picked = {name: column.filter(good).to_pylist() for name, column in columns.items()}
    texts = text.filter(good).to_pylist() if text is not None else [None] * kept
    records = [
        PredictionRecord.model_construct(
            t=t, model=m, version=v, latency_ms=lat, tokens=tok, embedding=vec, text=txt
        )
        for t, m, v, lat, tok, vec, txt in zip(
            picked[C.T], picked[C.MODEL], picked[C.VERSION], picked[C.LATENCY_MS], picked[C.TOKENS],
            vectors, texts, strict=True,
        )
    ]  # fmt: skip
    return records, table.num_rows - kept


def read_parquet(path: Path) -> list[PredictionRecord]:
    """Every record of one file, strictly: an unreadable file or a row out of bounds raises."""
    records, dropped = _records(_load(path), str(path))
    if dropped:
        raise PredictionLogError(
            f"{path}: {dropped} rows out of bounds (t, latency_ms, tokens >= 0; model, version; "
            "an embedding of finite numbers)"
        )
    return records


class ParquetDirectoryReader(RangeReader):
    """Reads the Parquet files of one prediction-log directory; a file or row that is not records is
    skipped and counted (`skipped`), since one bad file must not blind the monitor."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.skipped = 0
        self._seen: set[Path] = set()

    def _rows(self, path: Path, filters: list[tuple[str, str, Any]] | None = None) -> list[PredictionRecord]:
        try:
            records, dropped = _records(_load(path, filters), str(path))
        except PredictionLogError:
            self.skipped += 1
            return []
        self.skipped += dropped
        return records

    def records(
        self, model: str, start: float, end: float, version: str | None
    ) -> Iterator[PredictionRecord]:
        filters: list[tuple[str, str, Any]] = [(C.T, ">=", start), (C.T, "<", end), (C.MODEL, "=", model)]
        if version is not None:
            filters.append((C.VERSION, "=", version))
        for path in files_of(self.directory, model, PARQUET_FILE_GLOB):
            try:
                if path.stat().st_mtime < start:  # closed before the range began
                    continue
            except OSError:
                continue
            yield from self._rows(path, filters)

    def follow(self, model: str, since: float | None = None) -> list[PredictionRecord]:
        records: list[PredictionRecord] = []
        for path in files_of(self.directory, model, PARQUET_FILE_GLOB):
            if path in self._seen:
                continue
            self._seen.add(path)
            try:
                if since is not None and path.stat().st_mtime < since:
                    continue
            except OSError:
                continue
            records += [r for r in self._rows(path) if r.model == model]
        self._seen = {p for p in self._seen if p.exists()}  # removed by the writer's retention
        return records
