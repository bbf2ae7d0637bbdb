"""The overcommit bench's inputs: its routing file is one the server reads, its traffic is as
skewed as it says (split into hot and cold streams as it says), its budget is sized from what a
version costs under one, and its report compares the hot set in mixed and split traffic."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.samples import Sample

from bench.overcommit import hot_set_shares, print_table, routing_yaml, zipf_versions
from bench.overcommit_budget import Residency, budget_for, check, spread
from bench.overcommit_split import hot_share, split_connections, split_streams
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


def test_split_traffic_shares_the_connections_by_the_hot_versions_zipf_share(tmp_path: Path) -> None:
    share = hot_share(8, 2, 1.1)
    weights = [1 / r**1.1 for r in range(1, 9)]
    assert share == pytest.approx(sum(weights[:2]) / sum(weights))  # about 0.58
    assert split_connections(64, share) == (round(64 * share), 64 - round(64 * share))
    assert split_connections(4, 0.99) == (3, 1) and split_connections(4, 0.01) == (1, 3), "one each at least"
    with pytest.raises(ValueError, match="--concurrency"):
        split_connections(1, 0.5)
    streams = split_streams(tmp_path, 8, 2, 1.1, 1, 64)
    assert (streams.hot_connections + streams.cold_connections, streams.zipf_hot_share) == (64, share)

    def asked(path: Path) -> Counter[str]:
        return Counter(json.loads(line)["model"].split("/")[1] for line in path.read_text().splitlines())

    hot, cold = asked(streams.hot), asked(streams.cold)
    assert set(hot) == {"1", "2"} and set(cold) == {str(v) for v in range(3, 9)}
    assert abs(hot["1"] / hot["2"] - 2**1.1) < 0.3, "the Zipf weights among the hot versions"
    assert cold["3"] > cold["8"], "and among the cold ones"


def _phase(sentences: float, hot: float, split_hot: float) -> dict[str, Any]:
    latency = {"p50_ms": 1.0, "p99_ms": 2.0, "codes": {"200": 10}}
    split = {
        "hot": {**latency, "sentences_per_s": split_hot}, "cold": {**latency, "sentences_per_s": 5.0},
        "hot_connections": 3, "cold_connections": 1, "zipf_hot_share": 0.7,
        "sentences_per_s": split_hot + 5.0, "loads": 4.0, "batches": 10.0, "hit_rate": 0.6,
    }  # fmt: skip
    return {
        **latency, "sentences_per_s": sentences, "hot_sentences_per_s": hot, "hot_versions": ["1"],
        "loads": 2.0, "hit_rate": 0.8, "split": split,
    }  # fmt: skip


def test_the_report_gives_the_hot_set_against_all_resident_in_mixed_and_split_traffic(capsys) -> None:
    report = {
        "device": "cpu", "versions": 4, "fit": 1, "cap": "count", "max_resident_versions": 1,
        "zipf_s": 1.1, "concurrency": 4, "texts": 1,
        "all_resident": _phase(100.0, 50.0, 40.0), "overcommit": _phase(60.0, 20.0, 36.0),
        "bring_back": {k: {"count": 0} for k in ("brought_back", "resident")},
    }  # fmt: skip
    assert hot_set_shares(report) == {"mixed": 0.4, "split": 0.9}
    print_table(report)
    table = capsys.readouterr().out
    assert "at most 1 versions resident" in table
    assert "| overcommit, mixed traffic | 60 | 60% | 20 | 40% |" in table
    assert "| overcommit, split traffic | 41 | 91% | 36 | 90% |" in table
    assert "mixed traffic 40%; split traffic 90%" in table
