"""Two controller replicas on one PostgreSQL; the leader SIGKILLed mid-commit and mid-delivery-burst
(bench/failover.py runs the same scenario and reports its figures). The follower leads within 30 s, no
acknowledged delivery is lost or doubled, no step is committed twice to the real git remote, and every
rollout ends as it would have (promoted: the canary is as fast as the baseline)."""

from __future__ import annotations

import pytest

from bench.failover import run_failover


@pytest.mark.slow
def test_the_follower_takes_over_without_losing_doubling_or_committing_twice(
    postgres_url, mlflow_server, git_remote, tmp_path
):
    report = run_failover(
        tmp_path, postgres_url, mlflow_server.tracking_uri, git_remote,
        models=2, fillers=20, crash_after_push=2, ttl_s=5.0, renew_s=1.0, finish_timeout_s=60.0,
    )  # fmt: skip
    assert report["leader_exit"] == -9
    assert report["takeover_s"] <= 30, report
    assert (report["lost"], report["doubled"], report["unsettled"]) == (0, 0, 0), report
    assert report["duplicates_resent"] > 0 and set(report["duplicates_answered"]) == {"duplicate"}, report
    assert report["double_commits"] == 0 and report["commits"] == 2 * 3, report
    assert set(report["outcomes"].values()) == {"promoted"}, report
    assert set(report["champions"].values()) == {"2"}, report
    # Every rollout's started and promoted notices arrived; none is owed (the dead leader's adopted).
    assert (report["notices_missing"], report["notices_owed_at_end"]) == (0, 0), report
