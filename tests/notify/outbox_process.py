"""A controller's notifier in a process of its own, for the kill test: it queues one notice for a
CloudEvents receiver that is down, says so on stdout, and keeps retrying until it is killed.

    python -m tests.notify.outbox_process OUTBOX_PATH RECEIVER_URL
    python -m tests.notify.outbox_process DATABASE_URL RECEIVER_URL OWNER   # a replica's shared outbox
"""

from __future__ import annotations

import os
import signal
import subprocess
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

ROOT = Path(__file__).resolve().parents[2]


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


def kill_while_queued(outbox: Path | str, url: str, *owner: str) -> None:
    """A notifier in a process of its own queues one notice for `url` (down) and is SIGKILLed;
    with `owner`, a replica's notifier on the shared outbox in the database at `outbox`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.notify.outbox_process", str(outbox), url, *owner],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "queued"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


if __name__ == "__main__":
    main(*sys.argv[1:4])
