"""The start-up breakdown the benchmarks report, from log lines formatted as the server's processes
format them (inference/runner.py: `%(asctime)s [process] %(levelname)s %(message)s`)."""

from __future__ import annotations

import logging

from bench.startup_marks import summary, timeline


def _line(at: float, process: str | None, message: str) -> str:
    name = f" {process}" if process else ""
    formatter = logging.Formatter(f"%(asctime)s{name} %(levelname)s %(message)s")
    record = logging.LogRecord("inference.runner", logging.INFO, __file__, 1, message, None, None)
    record.created, record.msecs = at, round((at % 1) * 1000)
    return formatter.format(record)


def test_the_marks_become_the_parts_of_the_start_up() -> None:
    t0 = 1_800_000_000.0
    lines = [
        "server: canaryflow serve ...",  # not a log mark
        _line(t0 + 0.5, None, "fork server imports: torch, tokenizers, uvicorn"),
        _line(t0 + 0.6, None, "serving mode: replicas"),
        _line(t0 + 0.6, None, "starting 2 processes from a fork server"),
        _line(t0 + 2.6, "worker0", "forked"),
        _line(t0 + 2.7, "worker1", "forked"),
        _line(t0 + 3.0, "worker0", "/m: loaded as a plain-torch BERT encoder"),
        _line(t0 + 5.0, "worker0", "/m: loaded in 0.40 s, warmed up in 1.50 s"),
        _line(t0 + 5.5, "worker1", "/m: loaded in 0.50 s, warmed up in 1.90 s"),
    ]
    marks = timeline(lines, t0)
    assert marks["cli_s"] == 0.5 and marks["preload"] == ["torch", "tokenizers", "uvicorn"]
    assert marks["fork_server_s"] == 2.0
    assert marks["processes"]["worker0"] == {
        "forked_at_s": 2.6,
        "loads": [{"load_began_at_s": 3.1, "load_s": 0.4, "warm_up_s": 1.5, "warm_at_s": 5.0}],
    }
    assert marks["processes"]["worker1"]["loads"][0]["load_began_at_s"] == 3.1
    assert summary(marks).endswith("warm at 5.5 s; no transformers preloaded")


def test_a_single_process_server_reports_its_loads_only() -> None:
    t0 = 1_800_000_000.0
    marks = timeline([_line(t0 + 4.0, None, "models:/m/1: loaded in 2.00 s, warmed up in 1.00 s")], t0)
    assert marks["cli_s"] is None and marks["fork_server_s"] is None
    assert marks["processes"]["parent"]["loads"][0]["load_began_at_s"] == 1.0
