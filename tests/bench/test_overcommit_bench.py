"""The overcommit bench's inputs: its routing file is one the server reads, and its traffic is as
skewed as it says."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bench.overcommit import routing_yaml, zipf_versions
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
