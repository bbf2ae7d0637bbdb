"""The prediction log in Parquet: the same records as JSONL read back by one reader, whole files only
(rotation, age, shutdown), a temporary or truncated file never read, and a real server with the flag."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pytest

from canaryflow.adapters.predictions import (
    LocalDirectoryReader,
    PredictionLogError,
    read_records,
    reader_for,
)
from inference.metrics import ServerMetrics
from inference.prediction_log import PredictionLog
from inference.prediction_records import PredictionLogConfig

from .conftest import SENTENCES, routing, running_server

DIMS = 16


def _fill(log: PredictionLog, n: int, seed: int, version: str = "1") -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        emb = rng.normal(size=(2, DIMS)).astype(np.float32)
        log.maybe_record("m", version, (i + 1) / 1000, [f"text {i}", "b"], emb, [i, i + 1])


def _written(metrics: ServerMetrics, version: str = "1") -> float:
    sample = {"model": "m", "version": version}
    return metrics.registry.get_sample_value("canaryflow_prediction_log_written_total", sample) or 0.0


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_round_trip_gives_the_same_records_in_either_format(tmp_path: Path, fmt: str) -> None:
    config = PredictionLogConfig(tmp_path, rate=1.0, keep_text=True, format=fmt, row_group_rows=7)  # type: ignore[arg-type]
    log = PredictionLog(config, ServerMetrics(), rng=random.Random(1))
    _fill(log, 30, seed=5)
    log.close()
    files = sorted((tmp_path / "m").iterdir())
    assert [p.suffix for p in files] == [f".{fmt}"]  # one whole file, no temporary left
    records = read_records(files[0])
    assert records == LocalDirectoryReader(tmp_path).read("m", 0, time.time() + 1)
    rng = np.random.default_rng(5)
    expected = [row for _ in range(30) for row in rng.normal(size=(2, DIMS)).astype(np.float32)]
    assert len(records) == 60
    got = np.asarray([r.embedding for r in records], np.float32)
    assert np.array_equal(got, np.stack(expected))
    assert [r.tokens for r in records[:4]] == [0, 1, 1, 2] and records[2].latency_ms == 2.0
    assert [r.text for r in records[:2]] == ["text 0", "b"]


def test_both_formats_in_one_folder_are_read_and_followed_together(tmp_path: Path) -> None:
    for fmt, seed in (("jsonl", 1), ("parquet", 2)):
        log = PredictionLog(PredictionLogConfig(tmp_path, rate=1.0, format=fmt), ServerMetrics())  # type: ignore[arg-type]
        _fill(log, 10, seed)
        log.close()
    reader = reader_for("local", tmp_path)
    assert len(reader.read("m", 0, time.time() + 1)) == 40
    assert len(reader.read("m", 0, time.time() + 1, limit=15)) == 15
    assert len(reader.follow("m")) == 40 and reader.follow("m") == []


def test_parquet_rotates_by_size_keeps_the_newest_and_publishes_only_whole_files(tmp_path: Path) -> None:
    metrics = ServerMetrics()
    now = [1000.0]
    config = PredictionLogConfig(
        tmp_path, rate=1.0, format="parquet", rotate_bytes=1, keep_files=3, row_group_rows=2
    )
    log = PredictionLog(config, metrics, clock=lambda: now[0])
    for i in range(8):
        now[0] += 1.0
        _fill(log, 1, seed=i)  # two samples: one full row group, then the file is over its size
        deadline = time.monotonic() + 10
        while _written(metrics) < 2 * (i + 1):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    visible = sorted((tmp_path / "m").glob("predictions-*.parquet"))
    assert [p.name.split("-")[1] for p in visible] == ["1006.000", "1007.000", "1008.000"]
    assert not list((tmp_path / "m").glob("*.tmp"))  # a file over its size is published at once
    assert [len(read_records(p)) for p in visible] == [2, 2, 2]
    log.close()


def test_an_idle_file_is_closed_when_its_time_is_up(tmp_path: Path) -> None:
    now = [1000.0]
    config = PredictionLogConfig(tmp_path, rate=1.0, format="parquet", rotate_s=60)
    log = PredictionLog(config, ServerMetrics(), clock=lambda: now[0])
    _fill(log, 3, seed=1)
    reader = LocalDirectoryReader(tmp_path)
    time.sleep(0.3)
    assert reader.follow("m") == []  # written, not yet visible
    now[0] += 61  # no new request: the writer thread's idle wake-up closes the file
    deadline = time.monotonic() + 5
    while not (found := reader.follow("m")):
        assert time.monotonic() < deadline, "the idle file was never published"
        time.sleep(0.05)
    assert len(found) == 6
    log.close()


def test_a_temporary_or_truncated_file_is_ignored_by_the_reader_and_named_by_read(tmp_path: Path) -> None:
    log = PredictionLog(PredictionLogConfig(tmp_path, rate=1.0, format="parquet"), ServerMetrics())
    _fill(log, 5, seed=3)
    log.close()
    (whole,) = (tmp_path / "m").glob("*.parquet")
    data = whole.read_bytes()
    (tmp_path / "m" / "predictions-2000.000-9.parquet.tmp").write_bytes(data[: len(data) // 2])  # a crash
    truncated = tmp_path / "m" / "predictions-3000.000-9.parquet"
    truncated.write_bytes(data[:-20])  # not made by the server: a copy cut short
    reader = LocalDirectoryReader(tmp_path)
    assert len(reader.read("m", 0, time.time() + 1)) == 10 and reader.skipped == 1
    assert len(reader.follow("m")) == 10
    with pytest.raises(PredictionLogError, match=r"predictions-3000\.000-9\.parquet: not a readable Parquet"):
        read_records(truncated)
    with pytest.raises(PredictionLogError, match=r"must end in \.jsonl or \.parquet"):
        read_records(tmp_path / "m" / "predictions-2000.000-9.parquet.tmp")


def test_a_real_server_with_the_flag_writes_readable_parquet(tmp_path: Path, loader) -> None:
    config = routing(("1", "mem://minilm", 100, "baseline"))
    with running_server(
        config, loader, prediction_log_rate=1.0, prediction_log_dir=tmp_path, prediction_log_format="parquet"
    ) as server:
        served = []
        with server.client() as client:
            for text in SENTENCES:
                r = client.post("/v1/embeddings", json={"model": "minilm", "input": text})
                assert r.status_code == 200
                served.append(r.json()["data"][0]["embedding"])
    files = list((tmp_path / "minilm").glob("predictions-*.parquet"))  # closed when the server stopped
    assert len(files) == 1 and not list((tmp_path / "minilm").glob("*.tmp"))
    records = read_records(files[0])
    assert len(records) == len(SENTENCES)
    for record, embedding in zip(records, served, strict=True):
        assert record.version == "1" and record.tokens > 0 and record.latency_ms > 0
        assert np.allclose(record.embedding, embedding, atol=1e-6)
