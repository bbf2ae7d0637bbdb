"""Rollout transitions announced through the Notifier port: which ones, in order, and what they say."""

from __future__ import annotations

from canaryflow.kernel.contracts.notifications import NoticeEvent, RolloutNotice

from .harness import Steps, add_rollout, make, policy


class Recorder:
    """The Notifier port, keeping what it was handed (delivery itself is tested in tests/notify)."""

    def __init__(self) -> None:
        self.notices: list[RolloutNotice] = []

    def notify(self, notice: RolloutNotice) -> None:
        self.notices.append(notice)

    def close(self, timeout_s: float = 5.0) -> None:
        pass


def _run(tmp_path, steps: Steps, approval: bool = False, ticks: int = 6) -> list[RolloutNotice]:
    recorder = Recorder()
    templates = {"report": "https://reports.example.com/{model}/{rollout}.html"}
    reconciler, store, _, _ = make(
        tmp_path, steps, policy(5, 50, approval=approval), notifier=recorder, link_templates=templates
    )
    add_rollout(store)
    for _ in range(ticks):
        reconciler.tick()
    return recorder.notices


def test_a_promoted_rollout_announces_start_each_passed_step_and_promotion(tmp_path):
    notices = _run(tmp_path, Steps())
    assert [(n.event, n.step) for n in notices] == [
        (NoticeEvent.STARTED, None),
        (NoticeEvent.STEP_PASSED, 1),
        (NoticeEvent.PROMOTED, 2),
    ]
    passed, promoted = notices[1], notices[2]
    assert passed.weight == 5 and [c.metric for c in passed.checks] == ["latency_p99"]
    assert promoted.headline() == "minilm (production): v2 promoted (was v1)"
    assert promoted.links["report"] == "https://reports.example.com/minilm/minilm-v2-a.html"
    assert promoted.links["workflow"].endswith("canaryflow-minilm-v2-a")
    assert "- latency_p99: pass" in promoted.summary()


def test_a_rolled_back_rollout_says_which_step_and_why(tmp_path):
    notices = _run(tmp_path, Steps({"analyze-50": ["fail"]}))
    assert [n.event for n in notices] == [
        NoticeEvent.STARTED,
        NoticeEvent.STEP_PASSED,
        NoticeEvent.ROLLED_BACK,
    ]
    rolled_back = notices[-1]
    assert rolled_back.step == 2 and rolled_back.weight == 50
    assert "latency_p99: canary slower by 40%" in rolled_back.reason
    assert rolled_back.checks[0].verdict == "fail"
    assert rolled_back.data()["headline"].endswith("v2 rolled back at step 2 (50%), v1 serves")


def test_waiting_for_approval_carries_the_pull_request(tmp_path):
    notices = _run(tmp_path, Steps(), approval=True, ticks=4)
    waiting = [n for n in notices if n.event == NoticeEvent.AWAITING_APPROVAL]
    assert len(waiting) == 1
    assert waiting[0].links["pull_request"] == "https://github.com/org/gitops/pull/7"


def test_a_failing_notifier_never_stops_the_rollout(tmp_path):
    class Broken(Recorder):
        def notify(self, notice: RolloutNotice) -> None:
            raise RuntimeError("notifier down")

    reconciler, store, _, _ = make(tmp_path, Steps(), policy(5, 50), notifier=Broken())
    rid = add_rollout(store)
    for _ in range(6):
        reconciler.tick()
    assert store.get(rid).phase == "promoted"
