"""Policies: the shipped default, and bad policies refused with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import Policy, PolicyError, load_policy, parse_policy


def test_default_policy_states_the_issue_budget() -> None:
    policy = load_policy("default")
    assert [s.weight for s in policy.steps] == [10, 50]
    assert policy.error_budget.false_rollback == 0.01 and policy.error_budget.false_promote == 0.05
    metrics = {m.name: m for m in policy.metrics}
    assert metrics["latency"].quantiles == [0.5, 0.95]
    assert (metrics["latency"].tolerance, metrics["latency"].alternative) == (0.10, 0.25)
    assert (metrics["error_rate"].tolerance, metrics["error_rate"].alternative) == (0.005, 0.02)
    assert policy.statistical_checks == 4  # p50, p95, error rate, shadow p50


def test_a_policy_file_by_path_and_minimal_policies_get_default_metrics(tmp_path: Path) -> None:
    path = tmp_path / "fast.yaml"
    path.write_text("name: fast\nsteps:\n  - weight: 20\n    min_duration_s: 5\n")
    policy = load_policy(path)
    assert policy.name == "fast" and policy.steps[0].min_samples == 200
    assert [m.name for m in policy.metrics] == [m.name for m in Policy(steps=policy.steps).metrics]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"steps": []}, "steps"),
        ({"steps": [{"weight": 50}, {"weight": 20}]}, "steps"),
        ({"steps": [{"weight": 101}]}, "steps[0].weight"),
        ({"steps": [{"weight": 10}], "max_duration_s": -1}, "max_duration_s"),
        ({"steps": [{"weight": 10}], "error_budget": {"false_rollback": 0.7}}, "error_budget.false_rollback"),
        ({"steps": [{"weight": 10}], "bogus": 1}, "bogus"),
        (
            {"steps": [{"weight": 10}], "metrics": [{"name": "lat", "kind": "latency", "quantiles": [0.5],
                                                     "tolerance": 0.3, "alternative": 0.2}]},
            "metrics[0].alternative",
        ),
        (
            {"steps": [{"weight": 10}], "metrics": [{"name": "lat", "kind": "latency", "tolerance": 0.1,
                                                     "alternative": 0.2}]},
            "metrics[0].quantiles",
        ),
        (
            {"steps": [{"weight": 10}], "metrics": [{"name": "lat", "kind": "latency", "quantiles": [1.5],
                                                     "tolerance": 0.1, "alternative": 0.2}]},
            "metrics[0].quantiles",
        ),
        (
            {"steps": [{"weight": 10}], "metrics": [{"name": "m", "kind": "gpu_memory", "tolerance": 0.1}]},
            "metrics",
        ),
    ],
)  # fmt: skip
def test_bad_policies_name_the_field(doc: dict, field: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(doc, "p.yaml")
    message = str(err.value)
    assert message.startswith(f"p.yaml: {field}:"), message
    assert "\n" not in message


def test_unknown_names_and_unreadable_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such shipped policy"):
        load_policy("nope")
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)
