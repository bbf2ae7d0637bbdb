"""The engine host-cost bench: the real engine process serves through its socket at the pace of
its stand-in device, and the row it prints says how much of a core the engine used for that."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_engine_serves_at_its_device_pace_and_its_cpu_is_read(tmp_path: Path) -> None:
    """One batch in flight on a device of 20,000 texts/s: the engine serves at most that, and not
    far below it (its own cost is microseconds a text)."""
    out = tmp_path / "row.json"
    cmd = [sys.executable, str(ROOT / "bench" / "engine_host.py"), "--batch", "64", "--in-flight", "1",
           "--rate", "20000", "--conns", "8", "--measure-s", "1.5", "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=180, capture_output=True)
    row = json.loads(out.read_text())
    assert 0.3 * 20000 <= row["sentences_per_s"] <= 1.05 * 20000, row
    assert 0 < row["engine_cores"] < 2.5, row
    assert row["engine_us_per_sentence"] > 0, row
