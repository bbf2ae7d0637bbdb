"""bench/profile_summary.py: a process's own line says which role it is and how busy each thread is,
which the sum over every process hides (one pegged process among eleven)."""

from __future__ import annotations

from pathlib import Path

from bench.profile_summary import process_lines

ENGINE = (
    'process 7:"python";thread (0x1);_bootstrap (p/process.py:1);_engine (/w/inference/runner.py:140);'
    "run (a/runners.py:3);_read_frame (/w/inference/engine_process.py:9) 80\n"
    'process 7:"python";thread (0x1);_bootstrap (p/process.py:1);_engine (/w/inference/runner.py:140);'
    "run (a/runners.py:3);_frame (/w/inference/engine_process.py:20) 40\n"
    'process 7:"python";thread (0x2);_worker (t/thread.py:1);run (/w/inference/models/cuda_graphs.py:5) 30\n'
    "not a sample line\n"
)


def test_each_process_gets_its_role_cores_and_threads(tmp_path: Path) -> None:
    path = tmp_path / "r32-c64-00.txt"
    path.write_text(ENGINE)
    lines = process_lines(path, rate=100, seconds=1.5, top=2)
    assert lines[0] == "r32-c64-00.txt (engine): 150 samples, 1.00 cores"
    assert (
        lines[1] == "    thread (0x1): 120 samples, 0.80 cores; "
        "_read_frame engine_process.py 67%, _frame engine_process.py 33%"
    )
    assert lines[2] == "    thread (0x2): 30 samples, 0.20 cores; run cuda_graphs.py 100%"


def test_without_the_recording_length_no_cores_are_claimed(tmp_path: Path) -> None:
    path = tmp_path / "r1-c1-03.txt"
    path.write_text(
        ENGINE.replace("_engine (/w/inference/runner.py:140)", "_front (/w/inference/runner.py:118)")
    )
    lines = process_lines(path, rate=100, seconds=None)
    assert lines[0] == "r1-c1-03.txt (front): 150 samples"
    assert "cores" not in "".join(lines)
