"""`canaryflow monitor replay`: one JSON verdict, exit 0 either way, 2 with a one-line reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from canaryflow.app.cli import app
from canaryflow.kernel.contracts.drift import DriftVerdict

from .synthetic import Traffic

runner = CliRunner()


def _replay(*args: str):
    return runner.invoke(app, ["monitor", "replay", *args])


def _files(tmp_path: Path, **shift: Any) -> tuple[Path, Path]:
    traffic = Traffic(seed=11)
    ref = traffic.write(tmp_path / "ref.jsonl", 600, t0=0, t1=3600)
    cur = traffic.write(tmp_path / "cur.jsonl", 150, t0=7200, t1=10800, **shift)
    return ref, cur


def test_no_drift_and_drift_both_exit_0(tmp_path: Path) -> None:
    ref, cur = _files(tmp_path)
    result = _replay("--reference", str(ref), "--current", str(cur))
    assert result.exit_code == 0, result.output
    verdict = DriftVerdict.model_validate_json(result.stdout)
    assert not verdict.drift and {c.name for c in verdict.checks} == {
        "embedding_mmd",
        "embedding_centroid",
        "tokens_ks",
        "latency_p95",
    }
    shifted = Traffic(seed=12).write(tmp_path / "topics.jsonl", 150, t0=7200, t1=10800, new_topic=0.5)
    result = _replay("--reference", str(ref), "--current", str(shifted), "--policy", "default")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["drift"] is True
    assert {c["name"] for c in doc["checks"] if c["drift"]} >= {"embedding_mmd"}
    assert all(set(c) >= {"name", "statistic", "threshold", "drift"} for c in doc["checks"])


def test_bad_input_exits_2_naming_file_line_and_field(tmp_path: Path) -> None:
    ref, cur = _files(tmp_path)
    lines = cur.read_text().splitlines()
    record = json.loads(lines[2])
    record["tokens"] = -3
    lines[2] = json.dumps(record)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    cases = {
        f"{bad}:3: tokens: Input should be greater than or equal to 0": ["--current", str(bad)],
        f"{tmp_path / 'nope.jsonl'}: cannot read": ["--current", str(tmp_path / "nope.jsonl")],
        "--policy: policy 'nope': no such shipped drift policy": ["--current", str(cur), "--policy", "nope"],
    }
    (tmp_path / "notjson.jsonl").write_text('{"t": 1,\n')
    cases[f"{tmp_path / 'notjson.jsonl'}:1: not JSON"] = ["--current", str(tmp_path / "notjson.jsonl")]
    for message, args in cases.items():
        result = _replay("--reference", str(ref), *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stdout == ""


def test_too_small_a_reference_or_other_vector_size_exits_2(tmp_path: Path) -> None:
    ref, cur = _files(tmp_path)
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join(ref.read_text().splitlines()[:50]) + "\n")
    result = _replay("--reference", str(small), "--current", str(cur))
    assert result.exit_code == 2 and "reference: 50 records, the policy needs at least 200" in result.stderr
    short = tmp_path / "short.jsonl"
    rows = [json.loads(line) for line in cur.read_text().splitlines()]
    short.write_text("".join(json.dumps({**r, "embedding": r["embedding"][:8]}) + "\n" for r in rows))
    result = _replay("--reference", str(ref), "--current", str(short))
    assert result.exit_code == 2 and "embedding: 8 values per record, the reference has 32" in result.stderr


def test_parquet_and_jsonl_files_are_read_by_their_extension(tmp_path: Path) -> None:
    import numpy as np
    import pyarrow.parquet as pq

    from canaryflow.adapters.predictions import read_records
    from inference.prediction_parquet import samples_table
    from inference.prediction_records import Sample

    ref, cur = _files(tmp_path, new_topic=0.5)
    records = read_records(ref)
    samples = [
        Sample(r.t, r.model, r.version, r.latency_ms, r.tokens, np.asarray(r.embedding, np.float32), None)
        for r in records
    ]
    as_parquet = tmp_path / "ref.parquet"
    pq.write_table(samples_table(samples, len(records[0].embedding)), as_parquet)
    from_jsonl = _replay("--reference", str(ref), "--current", str(cur))
    from_parquet = _replay("--reference", str(as_parquet), "--current", str(cur))
    assert from_parquet.exit_code == 0, from_parquet.output
    assert json.loads(from_parquet.stdout)["drift"] is True
    jsonl_stats = [c["statistic"] for c in json.loads(from_jsonl.stdout)["checks"]]
    parquet_stats = [c["statistic"] for c in json.loads(from_parquet.stdout)["checks"]]
    assert np.allclose(jsonl_stats, parquet_stats, rtol=1e-4)  # float32 embeddings: the same verdict

    cut = tmp_path / "cut.parquet"
    cut.write_bytes(as_parquet.read_bytes()[:-30])
    result = _replay("--reference", str(cut), "--current", str(cur))
    assert result.exit_code == 2 and "cut.parquet: not a readable Parquet file" in result.stderr
    result = _replay("--reference", str(tmp_path / "ref.csv"), "--current", str(cur))
    assert result.exit_code == 2 and "must end in .jsonl or .parquet" in result.stderr
