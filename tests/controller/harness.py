"""A controller wired to the real local runner, with a step layer scripted per node.

The engine under the controller is the real `workflows.local.LocalRunner` (its DAG, persistence, exit
handler, suspend/resume/stop); only what each step *does* is scripted here, so these tests exercise the
controller's reconcile loop against the engine it drives in production.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from pydantic import SecretStr

from canaryflow.kernel.ports import ApprovalGate
from controller.controller_settings import ControllerSettings
from controller.observability import ControllerMetrics
from controller.reconcile import Reconciler
from controller.rollout.records import RolloutRecord
from controller.rollout.store import RolloutStore
from policies.model import ApprovalPolicy, Policy, TrafficStep
from workflows.dag import DagNode
from workflows.local.runner import LocalRunner
from workflows.steps.base import StepInput, StepOutcome

HEAD_SHA = "f" * 40  # the promotion commit the scripted request-approval step asks reviewers about


def policy(*weights: int, approval: bool = False, max_duration_s: float = 300.0) -> Policy:
    return Policy(
        name="fast",
        steps=[TrafficStep(weight=w, min_duration_s=0, min_samples=0) for w in weights],
        approval=ApprovalPolicy(required=approval, environments=["production"]),
        max_duration_s=max_duration_s,
    )


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def verdict(decision: str) -> str:
    return json.dumps(
        {
            "decision": decision,
            "decided_at_s": 1.0,
            "checks": [{"metric": "latency_p99", "verdict": "pass" if decision == "promote" else "fail"}],
        }
    )


@dataclass
class Steps:
    """Per node id, the answers the step gives on successive calls (the last one repeats)."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    inputs: dict[str, StepInput] = field(default_factory=dict)  # the last input of each node
    approval: ApprovalGate | None = None  # when set, request-approval opens a real request through it

    def __call__(self, node: DagNode, step_input: StepInput) -> StepOutcome:
        self.calls.append(node.id)
        self.inputs[node.id] = step_input
        queue = self.answers.get(node.id, ["ok"])
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if node.step == "analyze":
            if answer == "ok":
                return StepOutcome(
                    state="succeeded", outputs={"verdict": "pass", "verdict_json": verdict("promote")}
                )
            if answer == "fail":
                return StepOutcome(
                    state="failed",
                    outputs={"verdict": "fail", "verdict_json": verdict("rollback")},
                    message="latency_p99: canary slower by 40%",
                )
            return StepOutcome(state="running", message=answer)
        if answer != "ok":
            raise RuntimeError(answer)
        outputs = {o: f"{node.id}-{o}" for o in node.outputs}
        if "commit_sha" in outputs:
            outputs["commit_sha"] = f"sha-{node.id}"
        if node.id == "request-approval" and self.approval is not None:
            request = self.approval.request(step_input.spec, "analysis report")
            outputs = {
                "approval_id": request.id,
                "approval_url": request.url,
                "approval_head_sha": request.head_sha,
                "approval_opened_at": str(request.opened_at or ""),
            }
        elif node.id == "request-approval":
            outputs = {
                "approval_id": "7",
                "approval_url": "https://github.com/org/gitops/pull/7",
                "approval_head_sha": HEAD_SHA,
                "approval_opened_at": str(time.time() - 60),
            }
        return StepOutcome(state="succeeded", outputs=outputs)


def make(
    tmp_path,
    steps: Steps,
    pol: Policy,
    clock: Clock | None = None,
    registry=None,
    approval_gate=None,
    notifier=None,
    link_templates=None,
    reviewers=None,
    workers: int | None = None,
):
    clock = clock or Clock()
    settings = ControllerSettings(db_path=tmp_path / "controller.db", mlflow_webhook_secret=SecretStr("s"))
    if workers is not None:
        settings = settings.model_copy(update={"reconcile_workers": workers})
    store = RolloutStore(settings.db_path)
    runner = LocalRunner(settings.db_path, steps, lambda name: pol, clock=clock)
    reconciler = Reconciler(
        settings,
        store,
        runner,
        registry,
        ControllerMetrics(store),
        approval_gate=approval_gate,
        reviewers=reviewers,
        policy_loader=lambda name: pol,
        clock=clock,
        notifier=notifier,
        link_templates=link_templates,
        workflow_link=runner.link,
    )
    return reconciler, store, runner, clock


def add_rollout(
    store: RolloutStore, rid: str = "minilm-v2-a", canary: str = "2", at: float | None = None
) -> str:
    now = at or time.time()
    store.create_rollout(
        RolloutRecord(
            id=rid,
            model="minilm",
            baseline_version="1",
            canary_version=canary,
            created_at=now,
            updated_at=now,
            reason="test",
        )
    )
    return rid


def awaiting_approval(tmp_path, gate: ApprovalGate, ticks: int = 3) -> tuple[Reconciler, RolloutStore, str]:
    """A one-step gated rollout driven until it waits for the pull request `gate` opened."""
    reconciler, store, _, _ = make(
        tmp_path, Steps(approval=gate), policy(5, approval=True), approval_gate=gate
    )
    rid = add_rollout(store)
    for _ in range(ticks):
        reconciler.tick()
    waiting = store.get(rid)
    assert waiting is not None and waiting.phase == "awaiting_approval"
    return reconciler, store, rid
