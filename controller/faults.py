"""Fault injection for the crash-and-restart tests: the process dies (SIGKILL) at a named point.

`CANARYFLOW_TEST_CRASH_AT=after_submit` (comma-separated names) makes the first pass through that point
kill the process exactly as `kill -9` would, with nothing flushed or cleaned up. Unset, it costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "CANARYFLOW_TEST_CRASH_AT"


def crash_point(name: str) -> None:
    wanted = os.environ.get(ENV)
    if wanted and name in wanted.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
