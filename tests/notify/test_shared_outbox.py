"""The replicas' shared outbox: a notice a replica owed when it died goes out from another, once;
rows of a replica that is alive are never taken; two replicas never adopt the same row. On SQLite
and on a real PostgreSQL server (what replicas share)."""

from __future__ import annotations

import threading
import time
from functools import partial
from pathlib import Path

import pytest

from canaryflow.adapters.database import Database, open_database
from canaryflow.adapters.notify import BackgroundNotifier
from canaryflow.adapters.notify.cloudevents_channel import CloudEventsChannel, to_cloudevent
from canaryflow.kernel.contracts.notifications import NoticeEvent
from controller.shared_outbox import SharedNoticeOutbox
from tests.notify.conftest import notice
from tests.notify.outbox_process import kill_while_queued
from tests.notify.receiver import Receiver


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "controller.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def database(database_url: str) -> Database:
    return open_database(database_url)


def test_rows_are_adopted_only_from_a_replica_that_is_gone(database: Database) -> None:
    a = SharedNoticeOutbox(database, "replica-a", orphan_after_s=0.6)
    b = SharedNoticeOutbox(database, "replica-b", orphan_after_s=0.6)
    rows = [a.add("hook", notice(event), limit=10) for event in (NoticeEvent.STARTED, NoticeEvent.FAILED)]
    other = a.add("chat", notice(), limit=10)
    assert b.adopt("hook") == [], "replica a is alive: its rows stay its own"
    time.sleep(0.9)  # a is silent past the timeout: gone
    adopted = b.adopt("hook")
    assert [row for row, _ in adopted] == rows and [n.event for _, n in adopted] == [
        NoticeEvent.STARTED,
        NoticeEvent.FAILED,
    ]
    assert b.adopt("hook") == [], "adopted once"
    assert a.adopt("hook") == [], "a is back, but the rows are b's now and b is alive"
    assert b.channels() == {"hook": 2, "chat": 1}
    assert other is not None and [row for row, _ in b.pending("chat")] == [], "a is alive again"


def test_a_clean_close_hands_the_rows_over_at_once(database: Database) -> None:
    a = SharedNoticeOutbox(database, "replica-a", orphan_after_s=300)
    b = SharedNoticeOutbox(database, "replica-b", orphan_after_s=300)
    row = a.add("hook", notice(), limit=10)
    a.close()
    assert [r for r, _ in b.pending("hook")] == [row]
    b.remove(row)  # type: ignore[arg-type]
    assert b.channels() == {}


def test_the_bound_per_channel_holds(database: Database) -> None:
    a = SharedNoticeOutbox(database, "replica-a")
    assert [a.add("hook", notice(), limit=2) is not None for _ in range(3)] == [True, True, False]


def test_two_replicas_never_adopt_the_same_row(database: Database) -> None:
    dead = SharedNoticeOutbox(database, "replica-dead", orphan_after_s=0.3)
    owed = {dead.add("hook", notice().model_copy(update={"step": i + 1}), limit=1000) for i in range(60)}
    time.sleep(0.5)
    takers = [SharedNoticeOutbox(database, f"replica-{name}", orphan_after_s=0.3) for name in "bc"]
    taken: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def take(i: int) -> None:
        start.wait()
        for _ in range(20):
            taken[i].extend(row for row, _ in takers[i].adopt("hook"))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not set(taken[0]) & set(taken[1]), "a row adopted by both replicas"
    assert set(taken[0]) | set(taken[1]) == owed


def test_a_notice_owed_by_a_killed_replica_is_delivered_by_another_once(
    database_url: str, database: Database
) -> None:
    """Replica a queues a notice while the receiver is down and is SIGKILLed; replica b, already
    running, adopts it once a's heartbeat is stale and delivers it with the CloudEvent id a would
    have sent; nothing is left owed."""
    down = Receiver()
    port, url = down._server.server_address[1], down.url
    down.stop()
    kill_while_queued(database_url, url, "replica-a")
    channel = CloudEventsChannel(url)
    outbox = partial(SharedNoticeOutbox, database, "replica-b", orphan_after_s=1.0)
    receiver = Receiver(port=port)
    try:
        notifier = BackgroundNotifier(
            [channel], outbox=outbox, max_attempts=3, backoff_s=0.01, max_backoff_s=0.02, adopt_every_s=0.2
        )
        (got,) = receiver.wait_for(1, timeout_s=15)
        time.sleep(0.6)  # a few more adoption rounds: nothing more goes out
        notifier.close(5)
        assert len(receiver.requests) == 1
    finally:
        receiver.stop()
    assert got.headers["ce-id"] == to_cloudevent(notice(), "/canaryflow/controller").get_id()
    assert notifier.stats()[channel.describe()].resumed == 1
    assert SharedNoticeOutbox(database, "replica-c").channels() == {}
