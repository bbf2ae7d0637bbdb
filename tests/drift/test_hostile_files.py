"""Files a careless user or an attacker hands the CLI: each one is refused with one line and exit 2.

- a Parquet prediction log whose embeddings are NaN passed as "no drift" (exit 0) and printed
  `"statistic": NaN`, which is not JSON; the same records as JSON Lines were refused;
- a named pipe as `--policy` (`analyze replay`, `monitor replay`) or `--current` hung until killed;
- a page-corrupted Parquet file gave a multi-line error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from canaryflow.adapters.predictions import read_records
from canaryflow.app.cli import app
from inference.prediction_log import Sample
from inference.prediction_parquet import samples_table

from .synthetic import Traffic

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def _logs(tmp_path: Path) -> tuple[Path, Path]:
    traffic = Traffic(seed=11)
    ref = traffic.write(tmp_path / "ref.jsonl", 600, t0=0, t1=3600)
    cur = traffic.write(tmp_path / "cur.jsonl", 150, t0=7200, t1=10800)
    return ref, cur


def _as_parquet(source: Path, target: Path, embedding: float | None = None) -> Path:
    records = read_records(source)
    dims = len(records[0].embedding)
    samples = [
        Sample(r.t, r.model, r.version, r.latency_ms, r.tokens,
               np.full(dims, embedding, np.float32) if embedding is not None
               else np.asarray(r.embedding, np.float32), None)
        for r in records
    ]  # fmt: skip
    pq.write_table(samples_table(samples, dims), target, row_group_size=50)
    return target


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_parquet_log_of_nan_embeddings_is_refused_as_json_lines_is(tmp_path: Path, value: float) -> None:
    ref, cur = _logs(tmp_path)
    bad = _as_parquet(cur, tmp_path / "cur.parquet", embedding=value)
    result = runner.invoke(app, ["monitor", "replay", "--reference", str(ref), "--current", str(bad)])
    assert result.exit_code == 2, result.output
    assert "cur.parquet: 150 rows out of bounds" in result.stderr and "finite" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "NaN" not in result.stdout


def test_the_drift_monitor_skips_nan_rows_of_a_parquet_log(tmp_path: Path) -> None:
    """The controller's directory reader counts the NaN rows as skipped and reads the others."""
    from canaryflow.adapters.predictions import ParquetDirectoryReader

    ref, cur = _logs(tmp_path)
    folder = tmp_path / "logs" / "minilm"
    folder.mkdir(parents=True)
    _as_parquet(cur, folder / "predictions-7200-1.parquet", embedding=float("nan"))
    _as_parquet(ref, folder / "predictions-0-1.parquet")
    reader = ParquetDirectoryReader(tmp_path / "logs")
    records = reader.follow("minilm")
    assert len(records) == 600 and reader.skipped == 150
    assert all(np.isfinite(r.embedding).all() for r in records)


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """In a child process with a deadline: a reader blocked on a pipe must fail the test, not hang it."""
    code = "from canaryflow.app.cli import app; app()"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT
    )


def test_a_named_pipe_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    ref, cur = _logs(tmp_path)
    pipe, log_pipe = tmp_path / "pipe.yaml", tmp_path / "pipe.jsonl"
    os.mkfifo(pipe)
    os.mkfifo(log_pipe)
    requests = tmp_path / "requests.jsonl"
    requests.write_text('{"t": 1, "arm": "canary", "latency_ms": 5, "ok": true}\n')
    cases = [
        ("analyze", "replay", "--policy", str(pipe), "--input", str(requests)),
        ("monitor", "replay", "--reference", str(ref), "--current", str(log_pipe)),
        ("monitor", "replay", "--reference", str(ref), "--current", str(cur), "--policy", str(pipe)),
    ]  # fmt: skip
    for args in cases:
        try:
            result = _run_cli(*args)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{' '.join(args[:2])} blocked on a named pipe")
        assert result.returncode == 2, (args, result.stderr)
        assert "a named pipe, not a regular file" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_page_corrupted_parquet_file_is_one_line(tmp_path: Path) -> None:
    ref, cur = _logs(tmp_path)
    good = _as_parquet(cur, tmp_path / "good.parquet").read_bytes()
    size = len(good)
    for at in (8, size // 5, size // 3, size // 2, (2 * size) // 3):
        damaged = bytearray(good)
        damaged[at : at + 64] = bytes((b ^ 0x5A) for b in damaged[at : at + 64])
        bad = tmp_path / f"bad-{at}.parquet"
        bad.write_bytes(bytes(damaged))
        result = runner.invoke(app, ["monitor", "replay", "--reference", str(ref), "--current", str(bad)])
        if result.exit_code == 0:  # a flip inside a value the format does not check: still records
            json.loads(result.stdout)
            continue
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1, (at, result.stderr)
