"""Versioned SQLite schemas: fresh files, files from before versioning, upgrades, and refusals."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from canaryflow.adapters.database.sqlite import Migration, SchemaError, connect, migrate, schema_version
from controller.rollout.store import RolloutStore
from workflows.local.store import RunStore

V1 = Migration(1, "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT)")
V2 = Migration(2, "ALTER TABLE t ADD COLUMN size INTEGER NOT NULL DEFAULT 0; CREATE INDEX t_size ON t (size)")


def test_a_fresh_file_gets_every_migration_and_its_version(tmp_path: Path) -> None:
    db = connect(tmp_path / "x.db")
    assert migrate(db, "c", [V1, V2]) == 2
    assert schema_version(db, "c") == 2
    db.execute("INSERT INTO t (name, size) VALUES ('a', 3)")
    assert migrate(db, "c", [V1, V2]) == 2  # idempotent on reopen


def test_an_upgrade_keeps_the_rows(tmp_path: Path) -> None:
    db = connect(tmp_path / "x.db")
    migrate(db, "c", [V1])
    db.execute("INSERT INTO t (name) VALUES ('kept')")
    migrate(db, "c", [V1, V2])
    assert [tuple(r) for r in db.execute("SELECT name, size FROM t")] == [("kept", 0)]


def test_a_file_from_before_versioning_is_adopted(tmp_path: Path) -> None:
    legacy = sqlite3.connect(tmp_path / "x.db")
    legacy.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    legacy.execute("INSERT INTO t (name) VALUES ('old')")
    legacy.commit()
    legacy.close()
    db = connect(tmp_path / "x.db")
    assert migrate(db, "c", [V1, V2]) == 2
    assert [r[0] for r in db.execute("SELECT name FROM t")] == ["old"]


def test_a_newer_file_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    db = connect(tmp_path / "x.db")
    migrate(db, "c", [V1, V2])
    with pytest.raises(SchemaError, match="newer than this canaryflow knows"):
        migrate(db, "c", [V1])
    assert schema_version(db, "c") == 2


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    db = connect(tmp_path / "x.db")
    migrate(db, "c", [V1])
    broken = Migration(2, "CREATE TABLE u (a INTEGER); ALTER TABLE missing ADD COLUMN b INTEGER")
    with pytest.raises(sqlite3.OperationalError):
        migrate(db, "c", [V1, broken])
    assert schema_version(db, "c") == 1
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'u'").fetchone() is None


def test_migrations_must_be_numbered_in_order(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"numbered 1\.\.n"):
        migrate(connect(tmp_path / "x.db"), "c", [V2])


def test_controller_and_runner_keep_their_versions_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "controller.db"
    RolloutStore(path).close()
    RunStore(path)
    db = connect(path)
    assert schema_version(db, "controller") >= 1
    assert schema_version(db, "workflow") >= 1


def test_runs_created_while_other_jobs_write_never_meet_a_locked_database(tmp_path: Path) -> None:
    """Models' jobs create runs (read, then write) while others save nodes, on one file at once."""
    import threading

    from canaryflow.kernel.types import RolloutSpec
    from policies import load_policy

    path = tmp_path / "controller.db"
    store, policy = RunStore(path), load_policy("demo")
    errors: list[BaseException] = []

    def job(model: str) -> None:
        try:
            for i in range(25):
                spec = RolloutSpec(rollout_id=f"{model}-{i}", model=model, baseline_version="1",
                                   canary_version="2", policy="demo")  # fmt: skip
                assert store.create(spec.rollout_id, spec, policy, ["a", "b"])
                store.update_run(spec.rollout_id, message="running")
        except BaseException as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(f"m{j}",)) for j in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
