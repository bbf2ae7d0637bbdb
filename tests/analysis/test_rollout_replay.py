"""The whole rollout replayed over one recorded log (`rollout_replay.py`, `analyze replay --rollout`):
every step in order, the bake, promotion, and the watch against the previous champion's record."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bench.analysis import Scenario, whole_rollout_log
from canaryflow.app.cli import app
from canaryflow.kernel.analysis.replay import RequestLog
from canaryflow.kernel.analysis.rollout_replay import replay_rollout
from policies import load_policy

POLICY = load_policy("default")
runner = CliRunner()


def test_a_regression_that_begins_after_promotion_is_rolled_back_by_the_watch() -> None:
    late = Scenario("late", "bad", regress=(1.5, 1000.0), steady=False)
    result = replay_rollout(POLICY, whole_rollout_log(late, 40.0, 1), start_s=0.0)
    assert [p.phase for p in result.phases] == ["step 1", "step 2", "bake", "watch"]
    assert [p.decision for p in result.phases] == ["promote", "promote", "promote", "rollback"]
    assert result.decision == "rollback" and result.phase == "watch"
    assert result.promoted_at_s is not None and result.promoted_at_s < 1000.0
    assert result.decided_at_s is not None and result.decided_at_s >= result.promoted_at_s + POLICY.watch_s
    # each step starts at the look the one before it passed
    assert result.phases[1].started_at_s == result.phases[0].decided_at_s


def test_a_bad_canary_is_rolled_back_in_its_first_step_and_a_good_one_kept() -> None:
    slow = replay_rollout(POLICY, whole_rollout_log(Scenario("2x", "bad", latency_shift=2.0), 40.0, 2))
    assert (slow.decision, slow.phase, slow.promoted_at_s) == ("rollback", "step 1", None)
    same = replay_rollout(POLICY, whole_rollout_log(Scenario("same", "good"), 40.0, 3), start_s=0.0)
    assert (same.decision, same.phase, same.watch_complete) == ("promote", "watch", True)


def _write(log: RequestLog, path: Path) -> Path:
    with path.open("w") as out:
        for t, canary, latency, ok in zip(log.t, log.canary, log.latency_s, log.ok, strict=True):
            arm = "canary" if canary else "baseline"
            ms = round(float(latency) * 1000, 3)
            out.write(
                json.dumps({"t": round(float(t), 3), "arm": arm, "latency_ms": ms, "ok": bool(ok)}) + "\n"
            )
    return path


def test_replay_rollout_prints_the_decision_the_phase_and_when(tmp_path: Path) -> None:
    late = Scenario("late", "bad", regress=(1.5, 1000.0), steady=False)
    path = _write(whole_rollout_log(late, 40.0, 1), tmp_path / "rollout.jsonl")
    result = runner.invoke(
        app, ["analyze", "replay", "--rollout", "--explain", "--policy", "default", "--input", str(path)]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert (record["decision"], record["phase"]) == ("rollback", "watch")
    assert record["decided_at_s"] > record["promoted_at_s"] and len(record["phases"]) == 4
    assert record["phases"][0]["verdict"]["decision"] == "promote"
    assert "rollout.jsonl: rollback in watch at" in result.stderr and "  bake from " in result.stderr
    mixed = runner.invoke(
        app, ["analyze", "replay", "--rollout", "--step", "1", "--policy", "default", "--input", str(path)]
    )
    assert mixed.exit_code == 2 and mixed.stderr.startswith("canaryflow analyze: --rollout:")


def test_plan_answers_offline_and_refuses_bad_input_naming_the_option() -> None:
    result = runner.invoke(app, ["analyze", "plan", "--policy", "default", "--rate", "2"])
    assert result.exit_code == 0, result.output
    assert "the error-rate check needs about 2,400 s; `max_duration_s` is 1,800 s" in result.stdout
    assert "recommended: low-traffic" in result.stdout
    as_json = runner.invoke(app, ["analyze", "plan", "--policy", "default", "--rate", "200", "--json"])
    record = json.loads(as_json.stdout)
    assert record["fits"] is True and record["recommended"] is None and len(record["steps"]) == 2
    for args, field in (
        (["--rate", "fast"], "--rate"),
        (["--rate", "-3"], "--rate"),
        (["--rate", "5", "--error-rate", "2"], "--error-rate"),
        (["--rate", "5", "--policy", "nope.yaml"], "--policy"),
    ):
        bad = runner.invoke(app, ["analyze", "plan", "--policy", "default", *args])
        assert bad.exit_code == 2, (args, bad.output)
        assert bad.stderr.startswith(f"canaryflow analyze: {field}"), bad.stderr
