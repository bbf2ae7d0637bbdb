"""The local JSONL prediction-log reader: a time range with a uniform cap, and tail-following."""

from __future__ import annotations

import os
import time
from pathlib import Path

from canaryflow.adapters.predictions import JsonlDirectoryReader, reader_for

from .synthetic import Traffic


def test_read_a_range_of_one_version_with_a_cap(tmp_path: Path) -> None:
    log = tmp_path / "minilm" / "predictions-100.000-1.jsonl"
    traffic = Traffic(seed=31)
    traffic.write(log, 300, t0=100, t1=400, version="2")
    traffic.write(log, 50, t0=100, t1=400, version="1")
    reader = reader_for("jsonl", tmp_path)
    records = reader.read("minilm", 200, 300, version="2")
    assert records and all(r.version == "2" and 200 <= r.t < 300 for r in records)
    capped = reader.read("minilm", 100, 400, version="2", limit=40)
    assert len(capped) == 40 and capped == sorted(capped, key=lambda r: r.t)
    assert min(r.t for r in capped) < 200 and max(r.t for r in capped) > 300  # spread over the range


def test_follow_reads_each_line_once_skips_old_files_and_bad_lines(tmp_path: Path) -> None:
    folder = tmp_path / "minilm"
    old = Traffic(seed=32).write(folder / "predictions-100.000-1.jsonl", 20, t0=100, t1=200)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    live = folder / "predictions-300.000-1.jsonl"
    Traffic(seed=33).write(live, 10, t0=300, t1=310)
    reader = JsonlDirectoryReader(tmp_path)
    assert len(reader.follow("minilm", since=time.time() - 3600)) == 10  # the old file is not read
    with live.open("a") as out:
        out.write('{"t": 311, "model": "minilm"}\n{"t": 312, "model": "minilm", "vers')  # bad, then partial
    Traffic(seed=34).write(folder / "predictions-320.000-1.jsonl", 5, t0=320, t1=330)
    assert len(reader.follow("minilm")) == 5 and reader.skipped == 1
    with live.open("a") as out:
        out.write('ion": "1", "latency_ms": 1, "tokens": 3, "embedding": [0.5]}\n')
    assert [r.t for r in reader.follow("minilm")] == [312]
    assert reader.follow("minilm") == []
