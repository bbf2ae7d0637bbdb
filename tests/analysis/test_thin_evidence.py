"""The thin-evidence switch: the policy field (off by default, refused with the field named when it
cannot work), the recorded name of a tuned policy, and the pure choice the controller makes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from canaryflow.kernel.analysis.forecast import reference_cdf
from canaryflow.kernel.analysis.observations import DEFAULT_LATENCY_BUCKETS_S
from canaryflow.kernel.analysis.thin_evidence import choose_policy
from policies import PolicyError, ThinEvidencePolicy, load_policy, parse_policy, tuned_policy_name

DEFAULT = load_policy("default")
SWITCHING = DEFAULT.model_copy(update={"thin_evidence": ThinEvidencePolicy(switch_to="low-traffic")})
LOW = load_policy("low-traffic")


def _document(**thin_evidence: object) -> dict[str, object]:
    return {"name": "mine", "steps": [{"weight": 10}], "thin_evidence": thin_evidence}


def test_the_switch_is_off_unless_a_policy_sets_it() -> None:
    assert DEFAULT.thin_evidence is None and LOW.thin_evidence is None
    policy = parse_policy(_document(switch_to="low-traffic"))
    assert policy.thin_evidence is not None
    thin = policy.thin_evidence
    assert (thin.when, thin.history_s) == ("forecast_exceeds_max_duration_s", 600)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "thin_evidence.switch_to: Field required"),
        ({"switch_to": ""}, "thin_evidence.switch_to: String should have at least 1 character"),
        ({"switch_to": "low-traffic@prior_strength=9"}, "thin_evidence.switch_to: a shipped policy name"),
        ({"switch_to": "mine"}, "thin_evidence: switch_to names this policy itself"),
        ({"switch_to": "low-traffic", "when": "always"}, "thin_evidence.when: Input should be"),
        ({"switch_to": "low-traffic", "history_s": 0}, "thin_evidence.history_s: Input should be greater"),
        ({"switch_to": "low-traffic", "after": 1}, "thin_evidence.after: Extra inputs are not permitted"),
    ],
)
def test_a_bad_field_is_refused_naming_it(fields: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(_document(**fields), "mine.yaml")
    assert str(caught.value).startswith(f"mine.yaml: {message}")


def test_a_switch_to_a_policy_that_cannot_be_read_is_refused_when_the_policy_loads(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nsteps: [{weight: 10}]\nthin_evidence: {switch_to: no-such-policy}\n")
    with pytest.raises(PolicyError, match=r"mine.yaml: thin_evidence.switch_to: policy 'no-such-policy'"):
        load_policy(path)


def test_a_tuned_policy_is_recorded_under_a_name_that_loads_back() -> None:
    name = tuned_policy_name("low-traffic", 1300.0)
    assert name == "low-traffic@prior_strength=1300"
    assert load_policy(name).prior_strength == 1300 and load_policy(name).steps == LOW.steps
    assert tuned_policy_name(name, 200.0) == "low-traffic@prior_strength=200"  # never twice
    with pytest.raises(PolicyError, match="prior_strength: not a number"):
        load_policy("low-traffic@prior_strength=lots")
    with pytest.raises(PolicyError, match="prior_strength: Input should be greater than or equal to 10"):
        load_policy("low-traffic@prior_strength=1")


def test_too_little_traffic_for_the_default_switches_to_low_traffic() -> None:
    choice = choose_policy(SWITCHING, "default", 2.0, LOW)
    assert choice.name == "low-traffic" and choice.switched_from == "default"
    assert not choice.asked.fits and choice.forecast.fits and choice.policy.steps == LOW.steps
    note = choice.note(600)
    assert note[0] == "forecast at 2 requests/s (the champion's last 600 s):"
    assert any("step 1 (10%) at 0.2 canary requests/s" in line for line in note)
    assert "thin evidence: the rollout runs under low-traffic instead:" in note


def test_enough_traffic_or_no_opt_in_keeps_the_policy() -> None:
    enough = choose_policy(SWITCHING, "default", 20.0, LOW)
    assert (enough.name, enough.tuned, enough.switched_from) == ("default", False, None)
    off = choose_policy(DEFAULT, "default", 2.0, LOW)  # thin, but the policy does not opt in
    assert (off.name, off.tuned) == ("default", False) and off.asked.advice
    assert not any("thin evidence" in line for line in off.note())


def test_a_long_tail_switches_with_the_prior_tuned_and_recorded_in_the_name() -> None:
    bounds = np.asarray(DEFAULT_LATENCY_BUCKETS_S)  # σ 0.9 and 5% of requests 5-20x slower
    tail = np.mean([reference_cdf(bounds, sigma=0.9, median_s=0.02 * k) for k in (5, 10, 15, 20)], axis=0)
    heavy = 0.95 * reference_cdf(bounds, sigma=0.9) + 0.05 * tail
    choice = choose_policy(SWITCHING, "default", 30.0, LOW, latency_cdf=heavy)
    assert not choice.asked.fits and choice.switched_from == "default"
    assert choice.forecast.fits and choice.policy.prior_strength > LOW.prior_strength
    assert choice.name == tuned_policy_name(choice.name, choice.policy.prior_strength)
    assert load_policy(choice.name).prior_strength == choice.policy.prior_strength


def test_without_tuning_only_the_shipped_switch_to_counts() -> None:
    thin = choose_policy(SWITCHING, "default", 2.0, LOW, tune=False)  # low-traffic as shipped fits
    assert (thin.name, thin.switched_from, thin.policy) == ("low-traffic", "default", LOW)
    bounds = np.asarray(DEFAULT_LATENCY_BUCKETS_S)
    tail = np.mean([reference_cdf(bounds, sigma=0.9, median_s=0.02 * k) for k in (5, 10, 15, 20)], axis=0)
    heavy = 0.95 * reference_cdf(bounds, sigma=0.9) + 0.05 * tail
    tail_choice = choose_policy(SWITCHING, "default", 30.0, LOW, tune=False, latency_cdf=heavy)
    assert tail_choice.name == "low-traffic" and tail_choice.policy.prior_strength == LOW.prior_strength
    stays = choose_policy(SWITCHING, "default", 0.3, LOW, tune=False)  # too thin even for low-traffic
    assert stays.name == "default" and not stays.forecast.fits and stays.asked.advice
