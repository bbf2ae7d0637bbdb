"""The overcommit bench's inputs: its routing file is one the server reads, its traffic is as
skewed as it says, and its budget is sized from what a version costs under one."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.samples import Sample

from bench.overcommit import routing_yaml, zipf_versions
from bench.overcommit_budget import Residency, budget_for, check, spread
from inference.server import read_routing_file


def test_the_routing_file_serves_every_version_from_one_folder(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(routing_yaml(tmp_path / "a model: folder", 16))
    config = read_routing_file(path)
    assert [v.version for v in config.versions] == [str(v) for v in range(1, 17)]
    assert {v.uri for v in config.versions} == {str(tmp_path / "a model: folder")}
    assert sum(v.weight for v in config.versions) == 100


def test_zipf_traffic_favours_the_first_versions_and_reaches_the_tail() -> None:
    counts = Counter(zipf_versions(20000, 16, 1.1, seed=1))
    assert set(counts) == {str(v) for v in range(1, 17)}
    shares = [counts[str(v)] / 20000 for v in range(1, 17)]
    assert abs(shares[0] / shares[1] - 2**1.1) < 0.3, "rank 1 is asked 2^s times as often as rank 2"
    expected_first = 1 / sum(1 / r**1.1 for r in range(1, 17))  # about 0.33
    assert abs(shares[0] - expected_first) < 0.02
    assert sum(shares[4:]) > 0.3, "a quarter of the versions must not take all the traffic"


def test_a_budget_sized_from_a_version_without_one_is_sized_again_from_its_cost_under_it() -> None:
    mib = 2**20
    # The H100 run: sized from a version with its own graphs (469 MB), versions on weight slots cost
    # 57 MB under it, and all 8 fitted "a budget for 2".
    first = budget_for(2, 469 * mib)
    assert first == 2.5 * 469 * mib
    verdict = check(2, first, 57 * mib)
    assert not verdict.sized and verdict.holds is not None and verdict.holds > 20
    assert verdict.next_budget == 2.5 * 57 * mib
    kept = check(2, verdict.next_budget, 60 * mib)  # a little dearer than sized for: still room for 2
    assert kept.sized and kept.next_budget == verdict.next_budget
    assert check(2, 250.0, 125.0).sized, "room for exactly 2"
    assert not check(2, 375.0, 125.0).sized, "room for one more is not a budget for 2"
    short = check(2, 250.0, 130.0)  # dearer: room for one only, sized up again
    assert not short.sized and short.next_budget == 2.5 * 130.0


def test_a_budget_no_version_fits_grows_until_one_is_measured() -> None:
    verdict = check(2, 100.0, None)
    assert not verdict.sized and verdict.holds is None and verdict.next_budget == 250.0


def test_what_the_budget_counts_is_read_from_the_servers_cache_series() -> None:
    page = [
        Sample("canaryflow_cache_resident_versions", {}, 3.0),
        Sample("canaryflow_cache_device_bytes", {"holder": "versions"}, 300.0),
        Sample("canaryflow_cache_device_bytes", {"holder": "idle_slots"}, 100.0),
        Sample("canaryflow_model_loads_total", {"model": "minilm", "version": "1"}, 4.0),
    ]
    now = Residency.of(page)
    assert now == Residency(3, 300.0, 100.0) and now.version_cost == 100.0
    assert Residency(0, 0.0, 100.0).version_cost is None
    with pytest.raises(ValueError, match="canaryflow_cache_resident_versions"):
        Residency.of(page[3:])
    during = spread([Residency(1, 100.0, 0.0), Residency(3, 300.0, 0.0)])
    assert (during["samples"], during["min"], during["mean"], during["max"]) == (2, 1, 2.0, 3)
