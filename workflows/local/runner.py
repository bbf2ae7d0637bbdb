"""`WorkflowEngine` on one machine: the rendered Argo Workflow itself, run in-process.

The runner renders the rollout's Workflow exactly as `workflow render` / `submit` do and executes that
document (workflows.local.artifact): the DAG tasks in order with their `depends`, each task's
`arguments` resolved into its template's `inputs`, the container args resolved and parsed by
`canaryflow workflow step`'s own parser, the step function called in-process as the container would
call it, retries from the template's retryStrategy, and the onExit steps with their `when`.

`reconcile(name)` moves the DAG on as far as it goes without blocking: it runs ready action nodes,
gives a polled node (wait-ready, analyze) one call, and leaves a suspend node waiting for `resume`.
Every transition is stored before the next one, so a runner started on the same database after a
crash continues where the old one stopped; a node that was running when the process died runs again
(steps are idempotent: a commit that changes nothing is not made twice). The exit handler has Argo's
semantics: when a node fails or the workflow is stopped, the rollback node runs.

One runner per database: the controller's reconcile loop owns it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from canaryflow.adapters.database import Database
from canaryflow.kernel.contracts.steps import Step, parse_weighted_node
from canaryflow.kernel.ports import EngineRefused
from canaryflow.kernel.types import RolloutSpec, WorkflowStatus
from policies.model import Policy
from workflows.argo.render import manifest, rollout_workflow
from workflows.dag import APPROVAL_NODE, DagNode, workflow_name
from workflows.local.artifact import ArtifactError, Task, WorkflowArtifact
from workflows.local.store import NodeRecord, RunRecord, RunStore
from workflows.steps.base import StepInput, StepOutcome
from workflows.workflow_settings import WorkflowSettings

log = logging.getLogger(__name__)

StepRunner = Callable[[DagNode, StepInput], StepOutcome]
_DONE = frozenset({"Succeeded", "Failed", "Error", "Omitted", "Skipped"})
_BAD = frozenset({"Failed", "Error"})
# Rendered workflows kept (about 40 kB each, so at most ~80 MB): more than the runs reconciled in
# turn, else the oldest is dropped just before its next reconcile and every reconcile renders its
# run again (about 2 ms, a fifth of a look's CPU at 300 rollouts in analysis).
_ARTIFACTS_KEPT = 2048
_FAILED = "Failed"  # workflow.status in the exit handler after a failure or a stop


class LocalRunner:
    # Nothing runs between reconciles: a rollout the controller stops reconciling is paused.
    advances_only_when_reconciled = True

    def __init__(
        self,
        db_path: Database | Path | str,
        run_step: StepRunner,
        policy_for: Callable[[str], Policy],
        clock: Callable[[], float] = time.time,
        settings: WorkflowSettings | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        """`on_close`: what the steps hold open beside the runner (the batched metrics reader's
        thread), ended by `close`."""
        self._store = RunStore(db_path)
        self._on_close = on_close
        # Only what shapes the document matters here (poll interval, names); defaults read no environment.
        self._settings = settings or WorkflowSettings.model_construct()
        self._artifacts: dict[str, WorkflowArtifact] = {}
        self._run_step = run_step
        self._policy_for = policy_for
        self._clock = clock
        # One lock per run: the controller reconciles models on a worker pool, and a run whose step
        # waits on a dependency must not hold up the runs of other models.
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _run_lock(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    # --- the WorkflowEngine port ----------------------------------------------------------------

    def submit(self, spec: RolloutSpec) -> str:
        """Stores the run with the policy as it is now, so a restart runs the same DAG."""
        policy = self._policy_for(spec.policy)
        artifact = self._render(spec, policy)
        name = workflow_name(spec)
        self._store.create(name, spec, policy, [t.name for t in (*artifact.tasks, *artifact.exit_tasks)])
        return name

    def _render(self, spec: RolloutSpec, policy: Policy) -> WorkflowArtifact:
        """The Workflow a cluster would get for this rollout (a pure function of spec and policy)."""
        return WorkflowArtifact(manifest(rollout_workflow(spec, policy, self._settings)))

    def _artifact(self, run: RunRecord) -> WorkflowArtifact:
        """Rendered once per run and process (a restart renders it again from the stored spec and policy)."""
        artifact = self._artifacts.pop(run.name, None) or self._render(run.spec, run.policy)
        self._artifacts[run.name] = artifact  # most recent last
        while len(self._artifacts) > _ARTIFACTS_KEPT:
            self._artifacts.pop(next(iter(self._artifacts)))
        return artifact

    def status(self, name: str) -> WorkflowStatus:
        run = self._store.run(name)
        return self._status(run, self._artifact(run), self._store.nodes(name))

    def _status(
        self, run: RunRecord, artifact: WorkflowArtifact, nodes: dict[str, NodeRecord]
    ) -> WorkflowStatus:
        ordered = [nodes[t.name] for t in (*artifact.tasks, *artifact.exit_tasks)]
        current = next((n.node for n in ordered if n.phase == "Running" or n.retry_at is not None), None)
        return WorkflowStatus(
            name=run.name,
            phase=run.phase,
            node=current,
            message=run.message,
            nodes=[n.status() for n in ordered],
        )

    def reconcile(self, name: str) -> WorkflowStatus:
        """The status from the run and nodes as `_advance` left them: each change it made was stored
        as it was made, so they are what the store holds (read once per reconcile, not twice)."""
        with self._run_lock(name):
            return self._status(*self._advance(name))

    def resume(self, name: str) -> None:
        """Lets the approval node pass; a no-op unless it is waiting (as Argo's resume)."""
        if not self._store.mark_resumed(name, APPROVAL_NODE):
            log.info("workflow %s: resume ignored, the approval node is not waiting", name)

    def stop(self, name: str, reason: str) -> None:
        """Asks for a stop; the next reconcile ends the running nodes and runs the rollback."""
        run = self._store.run(name)
        if run.phase == "Running" and run.stop_reason is None:
            self._store.update_run(name, stop_reason=reason or "stopped")

    def skip_analysis(self, name: str, reason: str) -> list[str]:
        """Promote now: the traffic steps, analyses and bake not done yet end Succeeded as `skipped:
        <reason>`, so the next reconcile goes on to the approval gate (if any) and the promotion.
        Returns the nodes skipped; none when the run already left them behind (a no-op, as a repeat)."""
        with self._run_lock(name):
            run = self._store.run(name)
            if run.phase != "Running" or run.exit_cause is not None or run.stop_reason is not None:
                return []
            nodes = self._store.nodes(name)
            skipped, now = [], self._clock()
            for task in self._artifact(run).tasks:
                record = nodes[task.name]
                if record.phase in _DONE or not _skippable(task.name):
                    continue
                record.phase, record.finished_at, record.retry_at = "Succeeded", now, None
                record.message = f"skipped: {reason}"
                self._store.save_node(name, record)
                skipped.append(task.name)
            return skipped

    def retry_from(self, name: str, node: str, note: str) -> list[str]:
        """Argo's retry of a failed workflow with `restartSuccessful` and a node selector: `node` and
        every task after it run again (the DAG is a chain), and the exit handler once the run ends
        again; what ran before keeps its outputs. `note` (who retried and why) is the first re-run
        node's message until it runs. Refused (EngineRefused) unless the run has ended failed or
        stopped. Returns the nodes reset."""
        with self._run_lock(name):
            run = self._store.run(name)
            if run.phase not in ("Failed", "Stopped", "Error"):
                raise EngineRefused(f"workflow {name} is {run.phase}: only a failed workflow is retried")
            artifact = self._artifact(run)
            names = [t.name for t in artifact.tasks]
            if node not in names:
                raise EngineRefused(f"workflow {name} has no node {node!r}")
            reset = [*names[names.index(node) :], *(t.name for t in artifact.exit_tasks)]
            for task in reset:
                fresh = NodeRecord(node=task, message=note if task == node else "")
                self._store.save_node(name, fresh)
            self._store.update_run(name, phase="Running", message="", stop_reason=None, exit_cause=None)
            log.info("workflow %s: retried from %s (%s)", name, node, note)
            return reset

    def close(self) -> None:
        """Ends what the steps hold open (`on_close`); the store stays the caller's to close. Call it
        once no reconcile runs any more: a step called after it reads no new look."""
        if self._on_close is not None:
            self._on_close()

    def link(self, name: str) -> str:
        return f"local://{self._store.db_path}#{name}"

    # --- moving the DAG on --------------------------------------------------------------------

    def _advance(self, name: str) -> tuple[RunRecord, WorkflowArtifact, dict[str, NodeRecord]]:
        """Moves the run on; returns it, its workflow and its nodes as now stored (every change to
        them below is written before the next, `_update_run` and `save_node`)."""
        run = self._store.run(name)
        dag = self._artifact(run)
        nodes = self._store.nodes(name)
        if run.phase != "Running":
            return run, dag, nodes
        if run.exit_cause is None:
            if run.stop_reason is not None:
                cause = f"stopped: {run.stop_reason}"
            else:
                state, cause = self._advance_main(run, dag, nodes)
                if state == "waiting":
                    return run, dag, nodes
                if state == "succeeded":
                    self._update_run(run, phase="Succeeded", message="")
                    return run, dag, nodes
            self._end_main(run, dag, nodes, cause)
            run = self._store.run(name)  # once per run: and a stop asked for meanwhile
        self._advance_exit(run, dag, nodes)
        return run, dag, nodes

    def _update_run(self, run: RunRecord, **fields: str | None) -> None:
        """Stores the fields, then sets them on `run`, which goes on saying what is stored."""
        self._store.update_run(run.name, **fields)
        for key, value in fields.items():
            setattr(run, key, value)

    def _advance_main(
        self, run: RunRecord, dag: WorkflowArtifact, nodes: dict[str, NodeRecord]
    ) -> tuple[Literal["waiting", "succeeded", "failed"], str]:
        """Runs tasks in order until one waits (runs, is suspended, retries later) or fails."""
        for task in dag.tasks:
            record = nodes[task.name]
            if record.phase not in _DONE:
                if any(nodes[dep].phase != "Succeeded" for dep in task.parents):
                    return "waiting", ""
                self._execute(run, dag, task, record, nodes)
            if record.phase in _BAD:
                return "failed", f"{task.name}: {record.message or record.phase}"
            if record.phase != "Succeeded":
                return "waiting", ""
        return "succeeded", ""

    def _end_main(
        self, run: RunRecord, dag: WorkflowArtifact, nodes: dict[str, NodeRecord], cause: str
    ) -> None:
        """Nodes still running end as Failed (Argo's stop does the same), pending ones never run."""
        now = self._clock()
        for task in dag.tasks:
            record = nodes[task.name]
            if record.phase == "Running":
                record.phase, record.finished_at, record.message = "Failed", now, cause
            elif record.phase == "Pending":
                record.phase, record.retry_at = "Omitted", None
            else:
                continue
            self._store.save_node(run.name, record)
        self._update_run(run, exit_cause=cause, message=cause)

    def _advance_exit(self, run: RunRecord, dag: WorkflowArtifact, nodes: dict[str, NodeRecord]) -> None:
        """The onExit steps with `workflow.status` = Failed (a stopped workflow fails too, as in Argo)."""
        cause = run.exit_cause or ""
        for task in dag.exit_tasks:
            record = nodes[task.name]
            if record.phase not in _DONE:
                try:
                    due = dag.runs(task, _FAILED)
                except ArtifactError as exc:
                    record.phase, record.message = "Error", str(exc)
                    self._store.save_node(run.name, record)
                    due = False
                if due:
                    self._execute(run, dag, task, record, nodes, status=_FAILED)
                elif record.phase == "Pending":
                    record.phase = "Skipped"
                    self._store.save_node(run.name, record)
        records = [nodes[t.name] for t in dag.exit_tasks]
        if any(r.phase in _BAD for r in records):
            failed = next(r for r in records if r.phase in _BAD)
            self._update_run(run, phase="Error", message=f"{cause}; rollback failed: {failed.message}")
        elif all(r.phase in _DONE for r in records):
            self._update_run(run, phase="Stopped" if run.stop_reason else "Failed", message=cause)

    def _execute(
        self,
        run: RunRecord,
        dag: WorkflowArtifact,
        task: Task,
        record: NodeRecord,
        nodes: dict[str, NodeRecord],
        status: str | None = None,
    ) -> None:
        now = self._clock()
        if task.kind == "suspend":
            if record.resumed:
                record.phase, record.finished_at, record.message = "Succeeded", now, "resumed"
            elif record.phase != "Running":
                record.phase, record.started_at, record.message = "Running", now, "waiting for approval"
            else:
                return  # still waiting: nothing to store
            self._store.save_node(run.name, record)
            return
        if record.retry_at is not None and now < record.retry_at:
            return
        # A new attempt: from Pending, or an action found Running (its process died mid-step).
        stored = (record.phase, record.retry_at, record.started_at, record.attempt)
        if record.phase == "Pending" or task.kind == "action":
            record.attempt += 1
        record.phase, record.retry_at = "Running", None
        record.started_at = record.started_at if record.started_at is not None else now
        if (record.phase, record.retry_at, record.started_at, record.attempt) != stored:
            self._store.save_node(run.name, record)  # a polled node's next call changes nothing here
        try:
            # The policy as submitted (a restart runs the same one); everything else from the artifact.
            call = dag.invocation(
                task,
                {name: n.outputs for name, n in nodes.items()},
                status,
                _failures(dag, nodes) if status is not None else "null",
                started_at=record.started_at,
                policy=run.policy,
            )
        except (ArtifactError, ValueError) as exc:  # Argo would refuse it: no retry can help
            record.phase, record.finished_at, record.message = "Error", now, str(exc)
            self._store.save_node(run.name, record)
            return
        node, step_input = call.node, call.step_input
        try:
            outcome = self._run_step(node, step_input)
        except Exception as exc:  # the step's error boundary: any error is retried or ends the node
            log.warning("workflow %s: node %s attempt %d: %s", run.name, node.id, record.attempt, exc)
            if node.retry is not None and record.attempt <= node.retry.limit:
                record.phase = "Pending"
                record.retry_at = now + node.retry.delay_s(record.attempt)
                record.message = f"attempt {record.attempt} failed, retrying: {exc}"
            else:
                record.phase, record.finished_at, record.message = "Error", now, str(exc)
            self._store.save_node(run.name, record)
            return
        stored_outputs, stored_message = record.outputs, record.message  # as stored: phase Running
        outputs = {**record.outputs, **outcome.outputs}
        if outcome.report_markdown is not None:
            outputs["report"] = outcome.report_markdown
        record.outputs = dict(sorted(outputs.items()))  # in the order the store reads them back
        record.message = outcome.message
        if outcome.state == "succeeded":
            record.phase, record.finished_at = "Succeeded", self._clock()
        elif outcome.state == "failed":
            record.phase, record.finished_at = "Failed", self._clock()
        elif (record.outputs, record.message) == (stored_outputs, stored_message):
            return  # a polled node still running that says what it said: the row is as it was
        self._store.save_node(run.name, record)


def _skippable(node_id: str) -> bool:
    """The nodes a promote-now passes over: per-weight commits, waits and analyses, and the bake."""
    return parse_weighted_node(node_id) is not None or node_id in (Step.WAIT_READY, Step.BAKE)


def _failures(dag: WorkflowArtifact, nodes: dict[str, NodeRecord]) -> str:
    """`workflow.failures` as Argo builds it: the failed and errored nodes, as a JSON list."""
    failed = [
        {
            "displayName": task.name,
            "message": nodes[task.name].message,
            "templateName": task.template["name"],
            "phase": nodes[task.name].phase,
            "podName": "",
            "finishedAt": nodes[task.name].finished_at,
        }
        for task in dag.tasks
        if nodes[task.name].phase in _BAD
    ]
    return json.dumps(failed)
