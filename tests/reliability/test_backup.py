"""The controller's database survives a clean stop and can be copied while live (issue 15, finding 6):
a clean stop checkpoints the WAL, and `canaryflow controller backup` uses SQLite's online backup."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

from canaryflow.app.local.process import ManagedProcess
from controller.rollout.store import RolloutStore
from tests.controller.conftest import signed_mlflow
from tests.support.net import free_port

CLI = str(Path(sys.executable).with_name("canaryflow"))
SECRET = "backup-secret"


def _inbox_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM cf_inbox").fetchone()[0]


def _alive(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_after_a_clean_stop_the_db_file_alone_holds_every_delivery(tmp_path, git_remote):
    db, port = tmp_path / "controller.db", free_port()
    env = {
        "CANARYFLOW_CONTROLLER_MLFLOW_WEBHOOK_SECRET": SECRET,
        "CANARYFLOW_CONTROLLER_REGISTRY_TRACKING_URI": "http://127.0.0.1:9",
        "CANARYFLOW_GITOPS_REMOTE_URL": str(git_remote),
        "CANARYFLOW_GITOPS_WORKDIR": str(tmp_path / "work"),
        "CANARYFLOW_WORKFLOWS_ENGINE": "local",
    }
    argv = [CLI, "controller", "serve", "--port", str(port), "--db", str(db), "--interval", "30"]
    proc = ManagedProcess("controller", argv, tmp_path / "controller.log", env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_until(lambda: _alive(url + "/healthz"), 60, "answering /healthz")
        for _ in range(3):
            headers, body = signed_mlflow(
                {"name": "minilm", "alias": "other", "version": "2"},
                secret=SECRET,
                delivery_id=str(uuid.uuid4()),
            )
            assert httpx.post(url + "/webhooks/mlflow", content=body, headers=headers).status_code == 202
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(30) == 0, proc.log_tail()
    finally:
        proc.stop()
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    alone = tmp_path / "copied" / "controller.db"
    alone.parent.mkdir()
    shutil.copyfile(db, alone)  # the file alone, as a naive backup would copy it
    assert _inbox_rows(alone) == 3


def test_backup_of_a_live_database_is_complete_and_self_contained(tmp_path):
    db, out = tmp_path / "controller.db", tmp_path / "backup" / "controller.db"
    store = RolloutStore(db)
    for i in range(200):
        store.accept_delivery("mlflow", f"d-{i}", "registry", {"i": i})
    stop = threading.Event()

    def keep_writing() -> None:
        i = 200
        while not stop.is_set():
            store.accept_delivery("mlflow", f"d-{i}", "registry", {"i": i})
            i += 1
            time.sleep(0.001)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        result = subprocess.run(
            [CLI, "controller", "backup", "--db", str(db), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        stop.set()
        writer.join()
    assert result.returncode == 0, result.stderr
    assert db.with_name("controller.db-wal").exists()  # the live store still has its WAL
    assert not out.with_name("controller.db-wal").exists()
    copied = _inbox_rows(out)
    assert copied >= 200 and f'"cf_inbox":{copied}' in result.stdout
    store.close()
    refused = subprocess.run(
        [CLI, "controller", "backup", "--db", str(tmp_path / "absent.db"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "does not exist" in refused.stderr
