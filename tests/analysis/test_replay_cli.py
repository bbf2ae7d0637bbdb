"""`canaryflow analyze replay`: one verdict line per input file, in order, decided in log time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from canaryflow.app.cli import app
from canaryflow.kernel.types import Verdict

runner = CliRunner()


def _write_log(path: Path, *, seed: int, canary_scale: float, t0: float = 0.0, rps: float = 40.0) -> Path:
    rng = np.random.default_rng(seed)
    n = int(rps * 900)
    t = t0 + np.sort(rng.uniform(0, 900, n))
    canary = rng.random(n) < 0.1
    latency = rng.lognormal(np.log(20.0), 0.35, n) * np.where(canary, canary_scale, 1.0)
    ok = rng.random(n) >= 0.005
    with path.open("w") as out:
        for ti, ci, li, oi in zip(t, canary, latency, ok, strict=True):
            arm = "canary" if ci else "baseline"
            out.write(json.dumps({"t": round(float(ti), 3), "arm": arm, "latency_ms": round(float(li), 3),
                                  "ok": bool(oi), "path": "/v1/embeddings"}) + "\n")  # fmt: skip
    return path


def test_replay_decides_each_file_in_order(tmp_path: Path) -> None:
    slow = _write_log(tmp_path / "slow.jsonl", seed=1, canary_scale=2.0, t0=5000.0)
    same = _write_log(tmp_path / "same.jsonl", seed=2, canary_scale=1.0)
    result = runner.invoke(app, ["analyze", "replay", "--policy", "default", "--input", str(slow), str(same)])
    assert result.exit_code == 0, result.output
    lines = [Verdict.model_validate_json(line) for line in result.stdout.splitlines()]
    assert [v.decision for v in lines] == ["rollback", "promote"]
    # Log time, not time since the step: the first log starts at t=5000.
    assert lines[0].decided_at_s is not None and 5060 <= lines[0].decided_at_s < 5900
    assert lines[1].decided_at_s is not None and 60 <= lines[1].decided_at_s < 900
    failed = {c.metric: c.verdict for c in lines[0].checks}
    assert failed["latency_p50"] == "fail"


def test_a_log_that_ends_undecided_is_inconclusive_with_no_time(tmp_path: Path) -> None:
    path = tmp_path / "short.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(
                {"t": i * 0.1, "arm": "canary" if i % 10 == 0 else "baseline", "latency_ms": 10.0, "ok": True}
            )
            for i in range(300)
        )
    )
    result = runner.invoke(app, ["analyze", "replay", "--policy", "default", "--input", str(path)])
    assert result.exit_code == 0
    verdict = json.loads(result.stdout)
    assert verdict["decision"] == "inconclusive" and verdict["decided_at_s"] is None


def test_bad_inputs_exit_2_with_a_one_line_reason(tmp_path: Path) -> None:
    good = _write_log(tmp_path / "good.jsonl", seed=3, canary_scale=1.0, rps=2)
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text('{"t": 1, "arm": "canary", "latency_ms": 3, "ok": true}\n{"t": 2, "arm": "canary"}\n')
    bad_policy = tmp_path / "policy.yaml"
    bad_policy.write_text("steps:\n  - weight: 0\n")
    cases = [
        (["--policy", str(bad_policy), "--input", str(good)], "steps[0].weight"),
        (["--policy", "default", "--input", str(bad_line)], f"{bad_line}:2: latency_ms"),
        (["--policy", "default", "--input", str(tmp_path / "missing.jsonl")], "no such file"),
        (["--policy", "default", "--input", str(good), "--step", "5"], "--step"),
    ]
    for args, reason in cases:
        result = runner.invoke(app, ["analyze", "replay", *args])
        assert result.exit_code == 2, (args, result.output)
        assert reason in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_installed_command_answers_help() -> None:
    exe = Path(sys.executable).with_name("canaryflow")
    done = subprocess.run(
        [str(exe), "analyze", "replay", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "--policy" in done.stdout and "--input" in done.stdout
