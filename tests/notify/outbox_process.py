"""A controller's notifier in a process of its own, for the kill test: it queues one notice for a
CloudEvents receiver that is down, says so on stdout, and keeps retrying until it is killed.

    python -m tests.notify.outbox_process OUTBOX_PATH RECEIVER_URL
"""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

from canaryflow.adapters.notify import BackgroundNotifier
from canaryflow.adapters.notify.cloudevents_channel import CloudEventsChannel
from controller.notice_outbox import NoticeOutbox
from tests.notify.conftest import notice


def main(outbox: str, url: str) -> None:
    channel = CloudEventsChannel(url, timeout_s=1.0)
    notifier = BackgroundNotifier(
        [channel],
        outbox=partial(NoticeOutbox, Path(outbox)),
        max_attempts=20,
        backoff_s=0.05,
        max_backoff_s=0.2,
    )
    assert notifier.durable, "the outbox did not open"
    notifier.notify(notice())
    print("queued", flush=True)
    time.sleep(60)  # the test kills this process long before


if __name__ == "__main__":
    main(*sys.argv[1:3])
