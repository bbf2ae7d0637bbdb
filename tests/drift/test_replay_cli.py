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
