"""The batched reads' reader process (`canaryflow.adapters.metrics.read_process`) when reads fail or
the process dies: the chunk's caller reads a `MetricsError` naming the server (as on the reader's
threads), a dead process is started again for the next chunk, and a closed reader refuses at once.
Its answers equal the threads' on a real Prometheus: `test_batched_reads.py` runs on both."""

from __future__ import annotations

import re
import time

import pytest

from canaryflow.adapters.metrics import MetricsError
from canaryflow.adapters.metrics.read_process import ProcessReads
from canaryflow.adapters.metrics.readings import VersionReading
from tests.analysis.test_batched_reads import Proxy

ARMS = (("m", "1", "2", 1_700_000_000_000),)


def _chunk(reads: ProcessReads) -> object:
    return reads(5000, 1_700_000_005_000, 1_700_000_010_000, ARMS)


@pytest.mark.prometheus
def test_a_failed_read_and_a_dead_reader_process_reach_the_chunk_as_metrics_errors(prometheus_server) -> None:
    server = prometheus_server(["127.0.0.1:9"], interval_s=60.0)
    proxy = Proxy(server.url, ("canaryflow_",))  # every family's query refused (422) while "fail"
    proxy.mode = "fail"
    reads = ProcessReads(proxy.url, timeout_s=5.0)
    try:
        with pytest.raises(MetricsError, match=rf"prometheus {re.escape(proxy.url)}: range query .*422"):
            _chunk(reads)
        first = reads._process
        assert first is not None and first.is_alive()

        first.kill()  # the reader process dies: the next chunk starts another, which reads again
        first.join(5.0)
        deadline = time.monotonic() + 5.0
        while reads._conn is not None:  # the answers' listener saw the pipe close
            assert time.monotonic() < deadline, "the dead reader process was not noticed"
            time.sleep(0.01)
        proxy.mode = "pass"
        empty = (VersionReading(), VersionReading())  # no such model in this Prometheus: nothing counted
        assert _chunk(reads) == [{1: empty, 2: empty}]  # looks 1 and 2 of the step, read
        assert reads._process is not first and reads._process.is_alive()
    finally:
        reads.close()
        proxy.close()
    assert not reads._process.is_alive()
    with pytest.raises(MetricsError, match="stopped"):
        _chunk(reads)
