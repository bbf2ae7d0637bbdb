"""Prediction-log formats side by side: JSONL against Parquet, for the same records written by the
inference server's own writer (`inference.prediction_log`) and read back by the reader everything
uses (`canaryflow.adapters.predictions`: the drift monitor's reference read, `monitor replay`).

Records: N (default 100,000) samples of one model, 384-dim float32 embeddings (all-MiniLM-L6-v2's
size; unit-normalised Gaussian vectors: float32 mantissas are close to incompressible either way, so
the sizes are what real embeddings give, within a few percent), realistic latency and token counts.
Measured, in one run:
- bytes per record on disk;
- write: seconds for the writer thread to drain all N from its queue (off the request path, but it
  is the CPU the server spends);
- read: seconds to read the N records back as `PredictionRecord`s, through `read_records(file)` and
  through the directory reader's time-range `read` (what the monitor does for a reference); the
  fastest of --repeats reads, since the machine is shared;
- to array: the embeddings alone decoded into one float32 array, no record objects: a lower bound of
  what a columnar read path would cost (not one the project has; the readers return records).

Run: .venv/bin/python bench/prediction_log.py [--records N] [--dims D] [--repeats R]
Writes bench/results/prediction_log.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from canaryflow.adapters.predictions import LocalDirectoryReader, read_records
from canaryflow.kernel.contracts.drift import PredictionLogFormat
from inference.metrics import ServerMetrics
from inference.prediction_log import PredictionLog
from inference.prediction_records import PredictionLogConfig

FORMATS: tuple[PredictionLogFormat, ...] = ("jsonl", "parquet")
RESULTS = Path(__file__).resolve().parent / "results"


def write(
    directory: Path, fmt: PredictionLogFormat, embeddings: np.ndarray, tokens: np.ndarray, latency: np.ndarray
) -> float:
    n = len(embeddings)
    config = PredictionLogConfig(
        directory,
        rate=1.0,
        format=fmt,
        queue_size=n + 1,
        rotate_bytes=2**40,
    )
    log = PredictionLog(config, ServerMetrics(), rng=random.Random(0))
    started = time.perf_counter()
    for i in range(n):
        log.maybe_record("minilm", "1", float(latency[i]), None, embeddings[i : i + 1], tokens[i : i + 1])
    log.close(timeout_s=600)
    return time.perf_counter() - started


def embeddings_only(path: Path) -> np.ndarray:
    """A lower bound, not a project code path: the file's embeddings decoded straight into one float32
    array (what the drift statistics use), with no record objects in between."""
    if path.suffix == ".parquet":
        column = pq.read_table(path, columns=["embedding"]).column("embedding").combine_chunks()
        values = column.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(column), column.type.list_size)
    lines = path.read_bytes().splitlines()
    return np.asarray([orjson.loads(line)["embedding"] for line in lines], dtype=np.float32)


def best_of(repeats: int, read: Callable[[], Sized], expected: int) -> float:
    """The fastest of `repeats` reads: the machine is shared, the minimum is the format's own cost."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        count = len(read())
        times.append(time.perf_counter() - started)
        assert count == expected, f"read {count} records, wrote {expected}"
    return min(times)


def measure(
    fmt: PredictionLogFormat, embeddings: np.ndarray, tokens: np.ndarray, latency: np.ndarray, repeats: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_s = write(directory, fmt, embeddings, tokens, latency)
        (path,) = (directory / "minilm").glob(f"predictions-*.{fmt}")
        size = path.stat().st_size
        read_file_s = best_of(repeats, lambda: read_records(path), len(embeddings))
        reader = LocalDirectoryReader(directory)
        decode_s = best_of(repeats, lambda: embeddings_only(path), len(embeddings))
        read_range_s = best_of(
            repeats, lambda: reader.read("minilm", 0, time.time() + 1, version="1"), len(embeddings)
        )
    return {
        "format": fmt,
        "records": len(embeddings),
        "bytes": size,
        "bytes_per_record": size / len(embeddings),
        "write_s": write_s,
        "read_file_s": read_file_s,
        "read_range_s": read_range_s,
        "embeddings_array_s": decode_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=3, help="reads of each; the fastest is reported")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(args.records, args.dims)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    tokens = rng.integers(5, 120, size=args.records)
    latency = rng.lognormal(np.log(0.005), 0.4, size=args.records)
    rows = [measure(fmt, embeddings, tokens, latency, args.repeats) for fmt in FORMATS]
    jsonl, parquet = rows
    print(
        f"prediction log, {args.records:,} records of {args.dims} float32 dims (one run, reads best of"
        f" {args.repeats})"
    )
    print(f"{'':14}{'jsonl':>12}{'parquet':>12}{'jsonl/parquet':>15}")
    for key, label, unit in (
        ("bytes_per_record", "bytes/record", "{:12.0f}"),
        ("write_s", "write s", "{:12.2f}"),
        ("read_file_s", "read file s", "{:12.2f}"),
        ("read_range_s", "read range s", "{:12.2f}"),
        ("embeddings_array_s", "to array s", "{:12.2f}"),
    ):
        ratio = jsonl[key] / parquet[key] if parquet[key] else float("nan")
        print(f"{label:14}{unit.format(jsonl[key])}{unit.format(parquet[key])}{ratio:14.1f}x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "prediction_log.json"
    doc = {"records": args.records, "dims": args.dims, "repeats": args.repeats, "rows": rows}
    out.write_text(json.dumps(doc, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
