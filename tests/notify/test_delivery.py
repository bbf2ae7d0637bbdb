"""Delivery off the reconcile loop: retries with backoff, a bounded queue, and a notify that never waits."""

from __future__ import annotations

import time

from canaryflow.adapters.notify import BackgroundNotifier
from canaryflow.adapters.notify.apprise_channel import AppriseChannel
from tests.notify.conftest import Stuck, notice
from tests.notify.receiver import Receiver


def test_refused_deliveries_are_retried_until_taken(receiver: Receiver) -> None:
    receiver.fail_first = 2
    channel = AppriseChannel(f"json://{receiver.url.removeprefix('http://')}/hook")
    notifier = BackgroundNotifier([channel], max_attempts=4, backoff_s=0.05, max_backoff_s=0.1)
    notifier.notify(notice())
    receiver.wait_for(1)
    notifier.close(5)
    stats = notifier.stats()[channel.describe()]
    assert (stats.delivered, stats.retries, stats.failed) == (1, 2, 0)


def test_gives_up_after_max_attempts_and_goes_on(receiver: Receiver) -> None:
    receiver.fail_first = 3
    channel = AppriseChannel(f"json://{receiver.url.removeprefix('http://')}/hook")
    notifier = BackgroundNotifier([channel], max_attempts=3, backoff_s=0.01, max_backoff_s=0.02)
    notifier.notify(notice())  # refused three times: dropped after the third
    notifier.notify(notice())  # the next one gets through
    receiver.wait_for(1)
    notifier.close(5)
    stats = notifier.stats()[channel.describe()]
    assert (stats.delivered, stats.failed, stats.retries) == (1, 1, 2)


def test_notify_never_blocks_and_a_full_queue_drops(receiver: Receiver) -> None:
    stuck = Stuck()
    healthy = AppriseChannel(f"json://{receiver.url.removeprefix('http://')}/hook")
    notifier = BackgroundNotifier([stuck, healthy], queue_size=2, backoff_s=0.01)
    started = time.perf_counter()
    for _ in range(5):
        notifier.notify(notice())
    assert time.perf_counter() - started < 0.5  # the caller never waits on a channel
    receiver.wait_for(2)  # the healthy channel is not held up by the stuck one
    stuck.release.set()
    notifier.close(5)
    stats = notifier.stats()
    assert stats["stuck"].dropped >= 2 and stats["stuck"].delivered == len(stuck.sent) <= 3
    assert stats[healthy.describe()].delivered + stats[healthy.describe()].dropped == 5


def test_what_became_of_each_notice_is_logged_per_channel_for_its_rollout(
    receiver: Receiver, tmp_path
) -> None:
    from canaryflow.kernel.contracts.notifications import NoticeEvent
    from controller.notice_log import NoticeLog

    log = NoticeLog(tmp_path / "controller.db")
    receiver.fail_first = 3
    channel = AppriseChannel(f"json://{receiver.url.removeprefix('http://')}/hook")
    notifier = BackgroundNotifier([channel], max_attempts=3, backoff_s=0.01, on_settled=log.record)
    notifier.notify(notice(NoticeEvent.STARTED))  # refused three times: failed
    notifier.notify(notice(NoticeEvent.ROLLED_BACK))  # delivered
    receiver.wait_for(1)
    notifier.close(5)
    stuck = Stuck()
    held = BackgroundNotifier([stuck], queue_size=1, on_settled=log.record)
    held.notify(notice(NoticeEvent.STARTED))  # sent, and blocked there
    assert stuck.entered.wait(5)
    for event in (NoticeEvent.STEP_PASSED, NoticeEvent.ROLLED_BACK):
        held.notify(notice(event))  # one waits in the queue, the last finds it full
    stuck.release.set()
    held.close(5)
    rows = log.of_rollout("minilm-v3-010c7772")
    by = {(r.channel, r.event): r for r in rows}
    failed = by[(channel.describe(), NoticeEvent.STARTED)]
    assert (failed.outcome, failed.attempts) == ("failed", 3) and failed.error
    sent = by[(channel.describe(), NoticeEvent.ROLLED_BACK)]
    assert (sent.outcome, sent.attempts, sent.error) == ("delivered", 1, "")
    assert sent.headline == notice().headline() and sent.notice_at == notice().at <= sent.at
    assert (by[("stuck", NoticeEvent.STARTED)].outcome, by[("stuck", NoticeEvent.ROLLED_BACK)].outcome) == (
        "delivered",
        "dropped",
    )
    assert [r.at for r in rows] == sorted(r.at for r in rows) and log.of_rollout("other") == []
    log.close()
    assert len(NoticeLog(tmp_path / "controller.db").of_rollout("minilm-v3-010c7772")) == len(rows) >= 4
