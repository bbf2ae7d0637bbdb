"""A controller's notifier in a process of its own, for the kill test: it queues one notice for a
CloudEvents receiver that is down, says so on stdout, and keeps retrying until it is killed.

    python -m tests.notify.outbox_process OUTBOX_PATH RECEIVER_URL
    python -m tests.notify.outbox_process DATABASE_URL RECEIVER_URL OWNER   # a replica's shared outbox
"""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

from canaryflow.adapters.database import open_database
from canaryflow.adapters.notify import BackgroundNotifier
from canaryflow.adapters.notify.cloudevents_channel import CloudEventsChannel
from controller.notice_outbox import NoticeOutbox
from controller.shared_outbox import SharedNoticeOutbox
from tests.notify.conftest import notice


def main(outbox: str, url: str, owner: str | None = None) -> None:
    channel = CloudEventsChannel(url, timeout_s=1.0)
    opened = (
        partial(SharedNoticeOutbox, open_database(outbox), owner, orphan_after_s=1.0)
        if owner is not None
        else partial(NoticeOutbox, Path(outbox))
    )
    notifier = BackgroundNotifier(
        [channel],
        outbox=opened,
        max_attempts=20,
        backoff_s=0.05,
        max_backoff_s=0.2,
    )
    assert notifier.durable, "the outbox did not open"
    notifier.notify(notice())
    print("queued", flush=True)
    time.sleep(60)  # the test kills this process long before


if __name__ == "__main__":
    main(*sys.argv[1:4])
