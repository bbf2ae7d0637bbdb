"""The fleet-sharding bench measures what it says, small: replicas on a real PostgreSQL share the
rollouts, one is SIGKILLed, and its rollouts are reconciled again by the live ones, never by two."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.fleet_shards import run


def test_a_killed_replicas_rollouts_are_taken_over_by_the_live_ones(
    postgres_url: str, tmp_path: Path
) -> None:
    args = argparse.Namespace(
        rollouts=24, replicas=3, shards=3, ttl=2.0, renew=0.5, after_s=2.0, timeout=120.0
    )
    report = run(args, postgres_url, tmp_path)
    assert 0 < report["dead_replica_rollouts"] < 24, report
    assert report["takeover_last_s"] is not None and report["takeover_last_s"] < 30, report
    assert report["reconciled_by_two_live_replicas_in_one_second"] == 0, report
    assert report["errors"] == 0, report
