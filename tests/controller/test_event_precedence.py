"""A new event reaches its first commit while many rollouts are being judged: the inbox has a worker of
its own (it used to queue behind every model's job of the round), and while it starts the new rollout
the rollouts' jobs give way between two rollouts (they share one interpreter with it)."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

from controller.rollout.records import RolloutRecord
from controller.rollout.store import RolloutStore
from controller.workers import Precedence
from workflows.dag import DagNode
from workflows.steps.base import StepInput, StepOutcome

from .harness import Steps, make, policy

JUDGE_S = 0.1  # one analysis call of the rollouts already running
COMMIT_S = 0.3  # the new rollout's first commit (git, in production)


@dataclass
class TimedSteps(Steps):
    """Analysis calls take JUDGE_S and answer "not yet", the new rollout's first commit COMMIT_S; each
    call's start and end are kept with its rollout."""

    def __post_init__(self) -> None:
        self.log: list[tuple[str, str, float, float]] = []  # rollout, node, start, end
        self.lock = threading.Lock()

    def __call__(self, node: DagNode, step_input: StepInput) -> StepOutcome:
        start = time.monotonic()
        if node.step == "analyze":
            time.sleep(JUDGE_S)
            outcome = StepOutcome(state="running", message="waiting for samples")
        else:
            if node.id.startswith("set-weight") and step_input.spec.model == "fresh":
                time.sleep(COMMIT_S)
            outcome = super().__call__(node, step_input)
        with self.lock:
            self.log.append((step_input.spec.rollout_id, node.id, start, time.monotonic()))
        return outcome


def _rollout(store: RolloutStore, model: str) -> None:
    now = time.time()
    store.create_rollout(
        RolloutRecord(
            id=f"{model}-v2", model=model, baseline_version="1", canary_version="2",
            created_at=now, updated_at=now, reason="test",
        )
    )  # fmt: skip


def test_a_new_event_is_not_queued_behind_the_round_and_the_round_gives_way(tmp_path) -> None:
    steps = TimedSteps()
    reconciler, store, _, _ = make(tmp_path, steps, policy(5, 50), workers=2)
    for i in range(16):
        _rollout(store, f"m{i}")
    reconciler.tick()  # all started and in analysis
    ticking = threading.Thread(target=reconciler.tick)  # 16 calls of 0.1 s on 2 workers: ~0.8 s
    ticking.start()
    time.sleep(2 * JUDGE_S)
    # A new rollout, and a delivery that wakes the inbox (it starts nothing itself: no trigger
    # matches a version created), as the webhook handler stores one and notifies.
    _rollout(store, "fresh")
    delivery = str(uuid.uuid4())
    event = {
        "source": "mlflow",
        "delivery_id": delivery,
        "change": "version_created",
        "model": "x",
        "version": "3",
    }
    store.accept_delivery("mlflow", delivery, "registry", event)
    notified = time.monotonic()
    reconciler.notify()
    ticking.join(10.0)
    reconciler.close(5.0)
    commit = next(e for e in steps.log if e[0] == "fresh-v2" and e[1].startswith("set-weight"))
    # Not behind the round's queue (about 0.6 s of it was left): started within a call or two.
    assert commit[2] - notified < 2 * JUDGE_S + 0.1, (
        f"the first commit began {commit[2] - notified:.2f} s late"
    )
    # While the new rollout's first commit ran, no other rollout's analysis began.
    during = [e for e in steps.log if e[0] != "fresh-v2" and commit[2] < e[2] < commit[3]]
    assert not during, f"{len(during)} analysis calls began during the first commit"
    judged = [e for e in steps.log if e[0] != "fresh-v2" and e[1].startswith("analyze")]
    assert len(judged) == 32  # and the round went on after it


def test_precedence_is_bounded_in_time() -> None:
    """An urgent spell that outlasts `max_wait_s` (a dependency hanging) holds the jobs no longer."""
    precedence = Precedence(max_wait_s=0.2)
    precedence.give_way()  # nothing urgent: at once
    precedence.begin()
    started = time.monotonic()
    precedence.give_way()
    assert 0.15 < time.monotonic() - started < 1.0
    started = time.monotonic()
    precedence.give_way()  # the spell is older than max_wait_s already
    assert time.monotonic() - started < 0.05
    precedence.end()
    precedence.begin()  # a new spell waits again, and its end releases the jobs at once
    threading.Timer(0.05, precedence.end).start()
    started = time.monotonic()
    precedence.give_way()
    assert time.monotonic() - started < 0.15
