from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from canaryflow.kernel.contracts.notifications import CheckSummary, NoticeEvent, RolloutNotice
from tests.notify.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.stop()


def notice(event: NoticeEvent = NoticeEvent.ROLLED_BACK) -> RolloutNotice:
    return RolloutNotice(
        event=event,
        rollout_id="minilm-v3-010c7772",
        model="minilm",
        baseline_version="2",
        canary_version="3",
        environment="production",
        phase=event.value,
        step=1,
        weight=20,
        at=1_700_000_000.0,
        reason="analysis: gpu_memory canary shown worse than the tolerance (+25%)",
        checks=[
            CheckSummary(metric="gpu_memory", verdict="fail", reason="canary shown worse than the tolerance"),
            CheckSummary(metric="latency_p50", verdict="inconclusive", reason="not enough evidence yet"),
        ],
        links={
            "report": "https://reports.example.com/minilm-v3-010c7772.html",
            "pull_request": "https://github.com/org/gitops/pull/7",
        },
    )


class Stuck:
    """A channel whose endpoint hangs (a Slack outage): send blocks until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()  # a send is under way (and blocked until released)
        self.sent: list[RolloutNotice] = []

    def describe(self) -> str:
        return "stuck"

    def send(self, notice: RolloutNotice) -> None:
        self.entered.set()
        self.release.wait(10)
        self.sent.append(notice)
