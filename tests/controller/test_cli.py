"""`canaryflow controller`: exit codes and one-line reasons; the rollouts command reads the store."""

import json
import subprocess
import sys
import time
from pathlib import Path

from controller.rollout.records import RolloutRecord
from controller.rollout.store import RolloutStore

EXE = str(Path(sys.executable).with_name("canaryflow"))


def run(*args, env=None):
    import os

    return subprocess.run(
        [EXE, "controller", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_help_and_usage_errors(tmp_path):
    assert run("--help").returncode == 0
    assert run("serve", "--help").returncode == 0
    no_secret = run(
        "serve", "--db", str(tmp_path / "c.db"), env={"CANARYFLOW_CONTROLLER_MLFLOW_WEBHOOK_SECRET": ""}
    )
    assert no_secret.returncode == 2 and "mlflow_webhook_secret" in no_secret.stderr
    assert len(no_secret.stderr.strip().splitlines()) == 1
    bad_port = run("serve", env={"CANARYFLOW_CONTROLLER_PORT": "http"})
    assert bad_port.returncode == 2 and bad_port.stderr.startswith("canaryflow controller: port:")
    missing = run("rollouts", "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_rollouts_command_reads_the_store(tmp_path):
    store = RolloutStore(tmp_path / "c.db")
    now = time.time()
    store.create_rollout(
        RolloutRecord(
            id="m-v2-x",
            model="m",
            baseline_version="1",
            canary_version="2",
            created_at=now,
            updated_at=now,
            reason="test",
        )
    )
    store.close()
    listed = run("rollouts", "--db", str(tmp_path / "c.db"))
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["id"] == "m-v2-x"
    one = run("rollouts", "m-v2-x", "--db", str(tmp_path / "c.db"))
    assert one.returncode == 0 and json.loads(one.stdout)["transitions"][0]["to_phase"] == "pending"
    unknown = run("rollouts", "nope", "--db", str(tmp_path / "c.db"))
    assert unknown.returncode == 2 and "nope" in unknown.stderr


def test_a_second_controller_on_the_same_database_refuses_to_start(tmp_path):
    from controller.service import lock_database

    held = lock_database(tmp_path / "c.db")
    try:
        second = run(
            "serve", "--db", str(tmp_path / "c.db"), env={"CANARYFLOW_CONTROLLER_MLFLOW_WEBHOOK_SECRET": "s"}
        )
        assert second.returncode == 2 and "in use by another controller" in second.stderr
    finally:
        held.close()
    import pytest

    from controller.service import DatabaseInUse

    again = lock_database(tmp_path / "c.db")  # released with its holder
    with pytest.raises(DatabaseInUse):
        lock_database(tmp_path / "c.db")
    again.close()
