"""The outbox: a notice queued when the controller is killed goes out after the restart, with the same
CloudEvent id; what was delivered is not sent again; the bound per channel; and a broken outbox (corrupt
file, full disk) falls back to delivery from memory without the caller ever seeing an error."""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import pytest

from canaryflow.adapters.database.sqlite import connect, migrate, schema_version
from canaryflow.adapters.notify import BackgroundNotifier, NotificationSettings, notifier_from_settings
from canaryflow.adapters.notify.cloudevents_channel import CloudEventsChannel, to_cloudevent
from canaryflow.app.wiring import notify_outbox_path
from canaryflow.kernel.contracts.notifications import NoticeEvent, RolloutNotice
from controller.notice_outbox import COMPONENT, MIGRATIONS, NoticeOutbox
from tests.notify.conftest import Stuck, notice
from tests.notify.outbox_process import kill_while_queued
from tests.notify.receiver import Receiver

FAST = {"max_attempts": 3, "backoff_s": 0.01, "max_backoff_s": 0.02}


def _waiting(path: Path) -> dict[str, int]:
    """What the outbox file holds, read through a connection of its own (as the next start would)."""
    outbox = NoticeOutbox(path)
    try:
        return outbox.channels()
    finally:
        outbox.close()


def test_a_notice_queued_at_a_kill_is_delivered_after_the_restart_with_the_same_id(tmp_path):
    path = tmp_path / "controller-outbox.db"
    down = Receiver()
    port, url = down._server.server_address[1], down.url
    down.stop()  # the receiver is down while the first controller runs
    kill_while_queued(path, url)
    channel = CloudEventsChannel(url)
    assert _waiting(path) == {channel.describe(): 1}

    receiver = Receiver(port=port)  # back up, at the same address
    try:
        notifier = BackgroundNotifier([channel], outbox=partial(NoticeOutbox, path), **FAST)
        (got,) = receiver.wait_for(1)
        notifier.close(5)
    finally:
        receiver.stop()
    assert notifier.stats()[channel.describe()].resumed == 1
    # The id a receiver dedupes on is the one a send before the kill would have carried.
    assert got.headers["ce-id"] == to_cloudevent(notice(), "/canaryflow/controller").get_id()
    assert got.headers["ce-id"] == "minilm-v3-010c7772.rolled_back.1"
    assert json.loads(got.body) == notice().data()
    assert _waiting(path) == {}


def test_delivered_notices_are_not_sent_again_after_a_restart(tmp_path, receiver):
    path = tmp_path / "outbox.db"
    channel = CloudEventsChannel(receiver.url)
    notifier = BackgroundNotifier([channel], outbox=partial(NoticeOutbox, path), **FAST)
    for event in (NoticeEvent.STARTED, NoticeEvent.STEP_PASSED, NoticeEvent.PROMOTED):
        notifier.notify(notice(event))
    receiver.wait_for(3)
    notifier.close(5)
    assert notifier.stats()[channel.describe()].delivered == 3 and _waiting(path) == {}

    again = BackgroundNotifier([channel], outbox=partial(NoticeOutbox, path), **FAST)
    again.close(5)
    assert again.stats()[channel.describe()].resumed == 0 and len(receiver.requests) == 3


def test_a_notice_given_up_on_leaves_the_outbox(tmp_path, receiver):
    receiver.fail_first = 3
    path = tmp_path / "outbox.db"
    notifier = BackgroundNotifier(
        [CloudEventsChannel(receiver.url)], outbox=partial(NoticeOutbox, path), **FAST
    )
    notifier.notify(notice())
    notifier.notify(notice(NoticeEvent.FAILED))
    receiver.wait_for(1)
    notifier.close(5)
    assert _waiting(path) == {}  # the first failed max_attempts times: logged, not kept for ever


def _notices(n: int) -> list[RolloutNotice]:
    return [notice().model_copy(update={"step": i + 1}) for i in range(n)]


def test_the_outbox_holds_at_most_queue_size_notices_per_channel(tmp_path):
    path, stuck = tmp_path / "outbox.db", Stuck()
    notifier = BackgroundNotifier([stuck], outbox=partial(NoticeOutbox, path), queue_size=2)
    for item in _notices(5):
        notifier.notify(item)  # one in the send, one queued; the newest three are dropped
    assert notifier.stats()["stuck"].dropped == 3 and _waiting(path) == {"stuck": 2}
    stuck.release.set()
    notifier.close(5)
    assert [n.step for n in stuck.sent] == [1, 2] and _waiting(path) == {}


def test_a_smaller_queue_size_at_restart_keeps_the_oldest(tmp_path):
    path = tmp_path / "outbox.db"
    outbox = NoticeOutbox(path)
    for item in _notices(5):
        outbox.add("stuck", item, limit=10)
    outbox.close()
    stuck = Stuck()
    stuck.release.set()
    notifier = BackgroundNotifier([stuck], outbox=partial(NoticeOutbox, path), queue_size=2)
    notifier.close(5)
    stats = notifier.stats()["stuck"]
    assert (stats.resumed, stats.dropped, [n.step for n in stuck.sent]) == (2, 3, [1, 2])
    assert _waiting(path) == {}


def test_close_without_draining_keeps_the_notice_for_the_next_start(tmp_path):
    path = tmp_path / "outbox.db"
    down = Receiver()
    url = down.url
    down.stop()
    notifier = BackgroundNotifier(
        [CloudEventsChannel(url)], outbox=partial(NoticeOutbox, path), max_attempts=20, backoff_s=0.05
    )
    notifier.notify(notice())
    notifier.close(0.2)  # the receiver never answers: cut short, not given up on
    stats = notifier.stats()[CloudEventsChannel(url).describe()]
    assert (stats.kept, stats.failed, stats.delivered) == (1, 0, 0)
    assert sum(_waiting(path).values()) == 1


def _unusable_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "outbox unusable" in r.getMessage()]


@pytest.mark.parametrize("broken", ["corrupt", "directory", "newer"])
def test_a_broken_outbox_file_falls_back_to_memory(tmp_path, receiver, caplog, broken):
    path = tmp_path / "outbox.db"
    if broken == "corrupt":
        path.write_bytes(b"not a database, " * 512)
    elif broken == "directory":
        path.mkdir()
    else:  # written by a newer canaryflow: refused, not misread
        db = connect(path)
        assert migrate(db, COMPONENT, MIGRATIONS) == 1 == schema_version(db, COMPONENT)
        db.execute("UPDATE cf_schema SET version = 99 WHERE component = ?", (COMPONENT,))
        db.close()
    before = path.read_bytes() if path.is_file() else None
    caplog.set_level(logging.INFO, logger="canaryflow.notify")
    notifier = BackgroundNotifier(
        [CloudEventsChannel(receiver.url)], outbox=partial(NoticeOutbox, path), **FAST
    )
    assert not notifier.durable
    notifier.notify(notice())
    notifier.notify(notice(NoticeEvent.FAILED))
    receiver.wait_for(2)
    notifier.close(5)
    assert len(_unusable_logs(caplog)) == 1
    assert notifier.stats()[CloudEventsChannel(receiver.url).describe()].memory_only == 2
    if before is not None:
        assert path.read_bytes() == before  # an operator can still look at what was there


def test_a_full_disk_mid_run_falls_back_without_raising(tmp_path, receiver, caplog):
    path = tmp_path / "outbox.db"
    caplog.set_level(logging.INFO, logger="canaryflow.notify")
    notifier = BackgroundNotifier(
        [CloudEventsChannel(receiver.url)], outbox=partial(NoticeOutbox, path), **FAST
    )
    assert notifier.durable
    outbox = notifier._durable.outbox
    assert isinstance(outbox, NoticeOutbox) and outbox._db is not None
    pages = outbox._db.execute("PRAGMA page_count").fetchone()[0]
    outbox._db.execute(f"PRAGMA max_page_count = {pages}")  # writes now fail as on a full disk
    big = notice().model_copy(update={"reason": "x" * 3000})
    for step in range(1, 21):
        notifier.notify(big.model_copy(update={"step": step}))  # never raises
    assert not notifier.durable
    receiver.wait_for(20)
    notifier.close(5)
    assert len(_unusable_logs(caplog)) == 1
    # The notices from the failing write on were held in memory only (and counted: the metric).
    assert notifier.stats()[CloudEventsChannel(receiver.url).describe()].memory_only >= 1


def test_without_an_outbox_nothing_is_written(tmp_path, receiver):
    notifier = BackgroundNotifier([CloudEventsChannel(receiver.url)], **FAST)
    notifier.notify(notice())
    receiver.wait_for(1)
    notifier.close(5)
    assert not notifier.durable and list(tmp_path.iterdir()) == []
    assert notifier.stats()[CloudEventsChannel(receiver.url).describe()].memory_only == 1


def test_the_controller_keeps_its_outbox_beside_its_store(tmp_path, receiver):
    db = tmp_path / "state" / "canaryflow-controller.db"
    path = notify_outbox_path(db)
    assert path == tmp_path / "state" / "canaryflow-controller-outbox.db"
    notifier = notifier_from_settings(
        NotificationSettings(cloudevents_url=receiver.url), partial(NoticeOutbox, path)
    )
    assert notifier is not None and notifier.durable and path.is_file()
    notifier.close(5)
