"""The local runner's persistence: one row per workflow, one per node, in the controller's database.

Every node transition is committed before the runner moves on, so a process killed at any point
leaves a state a new runner continues from. Tables are prefixed `workflow_` to live beside the
controller's own tables in the same database (SQLite or PostgreSQL). Writes are fenced: on a shared
database only the leading controller's runner moves a workflow (canaryflow/adapters/database/base.py).
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path

from pydantic import BaseModel, Field

from canaryflow.adapters.database import Connection, Database, Migration, as_database
from canaryflow.kernel.types import RolloutSpec, WorkflowNodeStatus
from policies.model import Policy

NodePhase = str  # WorkflowNodeStatus.phase values

_MIGRATIONS = (
    Migration(
        1,
        """
CREATE TABLE IF NOT EXISTS workflow_runs (
    name TEXT PRIMARY KEY,
    spec_json TEXT NOT NULL,
    policy_json TEXT NOT NULL,
    phase TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    stop_reason TEXT,
    exit_cause TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS workflow_nodes (
    workflow TEXT NOT NULL REFERENCES workflow_runs(name),
    node TEXT NOT NULL,
    phase TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    retry_at REAL,
    resumed INTEGER NOT NULL DEFAULT 0,
    outputs_json TEXT NOT NULL DEFAULT '{}',
    message TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (workflow, node)
);
""",
    ),
)


class RunRecord(BaseModel):
    name: str
    spec: RolloutSpec
    policy: Policy
    phase: str
    message: str = ""
    stop_reason: str | None = None
    exit_cause: str | None = Field(default=None, description="set once the exit handler is due")


class NodeRecord(BaseModel):
    node: str
    phase: NodePhase = "Pending"
    attempt: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    retry_at: float | None = None
    resumed: bool = False
    outputs: dict[str, str] = Field(default_factory=dict)
    message: str = ""

    def status(self) -> WorkflowNodeStatus:
        return WorkflowNodeStatus(
            id=self.node,
            phase=self.phase,
            outputs=self.outputs,
            started_at=self.started_at,
            finished_at=self.finished_at,
            message=self.message,
        )


_PARSED_KEPT = 4096  # runs whose spec and policy are kept parsed: every run in flight, with room


class RunStore:
    def __init__(self, database: Database | Path | str) -> None:
        self.db = as_database(database)
        self.db_path = self.db.describe()
        self.db.migrate("workflow", _MIGRATIONS)
        # A run's spec and policy as parsed from their stored JSON, by run name: a run is read at
        # every reconcile, and validating a policy costs more than the rest of the read. Both models
        # are frozen; the entry is used only while the stored text is the same.
        self._parsed: dict[str, tuple[str, str, RolloutSpec, Policy]] = {}
        self._parsed_lock = threading.Lock()

    def _connect(self) -> AbstractContextManager[Connection]:
        # One transaction, committed on success, rolled back on error; SQLite's takes the write lock at
        # its start (`BEGIN IMMEDIATE`): a deferred one that reads and then writes (`create`) fails at
        # once with "database is locked" when another connection committed in between.
        return self.db.transaction()

    def close(self) -> None:
        self.db.close()

    def create(self, name: str, spec: RolloutSpec, policy: Policy, node_ids: list[str]) -> bool:
        """Inserts the run and its pending nodes; False (and nothing written) if it exists already."""
        now = time.time()
        with self._connect() as db:
            if db.execute("SELECT 1 FROM workflow_runs WHERE name = ?", (name,)).fetchone():
                return False
            db.execute(
                "INSERT INTO workflow_runs (name, spec_json, policy_json, phase, created_at, updated_at)"
                " VALUES (?, ?, ?, 'Running', ?, ?)",
                (name, spec.model_dump_json(), policy.model_dump_json(), now, now),
            )
            db.executemany(
                "INSERT INTO workflow_nodes (workflow, node, phase) VALUES (?, ?, 'Pending')",
                [(name, node) for node in node_ids],
            )
        return True

    def run(self, name: str) -> RunRecord:
        rows = self.db.query(
            "SELECT spec_json, policy_json, phase, message, stop_reason, exit_cause"
            " FROM workflow_runs WHERE name = ?",
            (name,),
        )
        if not rows:
            raise KeyError(name)
        row = rows[0]
        spec, policy = self._spec_and_policy(name, row[0], row[1])
        return RunRecord.model_construct(  # the parts are validated models, the rest the runner's own
            name=name,
            spec=spec,
            policy=policy,
            phase=row[2],
            message=row[3],
            stop_reason=row[4],
            exit_cause=row[5],
        )

    def _spec_and_policy(self, name: str, spec_json: str, policy_json: str) -> tuple[RolloutSpec, Policy]:
        with self._parsed_lock:
            kept = self._parsed.get(name)
        if kept is not None and kept[0] == spec_json and kept[1] == policy_json:
            return kept[2], kept[3]
        spec, policy = RolloutSpec.model_validate_json(spec_json), Policy.model_validate_json(policy_json)
        with self._parsed_lock:
            self._parsed[name] = (spec_json, policy_json, spec, policy)
            while len(self._parsed) > _PARSED_KEPT:
                self._parsed.pop(next(iter(self._parsed)))
        return spec, policy

    def nodes(self, name: str) -> dict[str, NodeRecord]:
        rows = self.db.query(
            "SELECT node, phase, attempt, started_at, finished_at, retry_at, resumed, outputs_json,"
            " message FROM workflow_nodes WHERE workflow = ?",
            (name,),
        )
        return {
            r[0]: NodeRecord.model_construct(  # the columns the runner wrote (save_node), as they were
                node=r[0],
                phase=r[1],
                attempt=r[2],
                started_at=r[3],
                finished_at=r[4],
                retry_at=r[5],
                resumed=bool(r[6]),
                outputs=json.loads(r[7]),
                message=r[8],
            )
            for r in rows
        }

    def save_node(self, name: str, node: NodeRecord) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE workflow_nodes SET phase = ?, attempt = ?, started_at = ?, finished_at = ?,"
                " retry_at = ?, resumed = ?, outputs_json = ?, message = ? WHERE workflow = ? AND node = ?",
                (
                    node.phase,
                    node.attempt,
                    node.started_at,
                    node.finished_at,
                    node.retry_at,
                    int(node.resumed),
                    json.dumps(node.outputs, sort_keys=True),
                    node.message,
                    name,
                    node.node,
                ),
            )

    def update_run(self, name: str, **fields: str | None) -> None:
        allowed = {"phase", "message", "stop_reason", "exit_cause"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"update_run: fields must be among {sorted(allowed)}")
        assignments = ", ".join(f"{key} = ?" for key in fields)
        with self._connect() as db:
            db.execute(
                f"UPDATE workflow_runs SET {assignments}, updated_at = ? WHERE name = ?",
                (*fields.values(), time.time(), name),
            )

    def mark_resumed(self, name: str, node_id: str) -> bool:
        """Only a node that is waiting (Running) can be resumed; True if it was."""
        with self._connect() as db:
            cursor = db.execute(
                "UPDATE workflow_nodes SET resumed = 1 WHERE workflow = ? AND node = ? AND phase = 'Running'",
                (name, node_id),
            )
            return cursor.rowcount == 1
