"""Fuzzing the parsers an attacker or a typo reaches: webhook sources, the policy and routing loaders.

Every input either parses or is refused with the error type its caller turns into a 4xx / exit 2
(WebhookRejected, PolicyError, ValidationError): never another exception, never a crash. Bodies are
signed with the right secret, so the fuzz reaches past the signature check into the parsers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from canaryflow.kernel.contracts.routing import RoutingConfig
from controller.webhooks.events import WebhookRejected
from controller.webhooks.registry import SOURCES
from controller.webhooks.signing import sign_databricks, sign_github, sign_mlflow
from controller.webhooks.source import ParseContext
from policies import PolicyError, load_policy, parse_policy

SECRET = "fuzz-secret"
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = time.time()
CONTEXT = ParseContext(now_s=NOW, timestamp_tolerance_s=300, max_event_age_s=3600)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        ["approved", "submitted", "closed", "model_version_alias", "created", "MODEL_VERSION_CREATED"]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
# Documents shaped like the senders' payloads, with any value anywhere.
keys = st.sampled_from(
    [
        "entity",
        "action",
        "data",
        "name",
        "version",
        "alias",
        "key",
        "value",
        "event",
        "model_name",
        "event_timestamp",
        "to_stage",
        "pull_request",
        "number",
        "repository",
        "full_name",
        "review",
        "state",
        "submitted_at",
        "commit_id",
        "head",
        "sha",
        "user",
        "login",
        "merged",
        "merged_at",
    ]
)
shaped = st.recursive(scalars, lambda inner: st.dictionaries(keys, inner, max_size=6), max_leaves=25)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    shaped.map(lambda v: json.dumps(v).encode()),
)
header_text = st.one_of(
    st.text(max_size=40), st.sampled_from(["1", "9" * 400, "NaN", " 12", "pull_request_review"])
)


def _signed(source: str, body: bytes, delivery: str, stamp: str, event: str) -> dict[str, str]:
    if source == "mlflow":
        return {
            "X-MLflow-Delivery-Id": delivery,
            "X-MLflow-Timestamp": stamp,
            "X-MLflow-Signature": sign_mlflow(SECRET, delivery, stamp, body),
        }
    if source == "databricks":
        return {"X-Databricks-Signature": sign_databricks(SECRET, body)}
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign_github(SECRET, body),
    }


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
@FUZZ
@given(
    body=bodies,
    delivery=header_text,
    stamp=st.one_of(header_text, st.just(str(int(NOW)))),
    event=st.one_of(header_text, st.sampled_from(["pull_request_review", "pull_request", "ping"])),
)
def test_a_signed_delivery_parses_or_is_refused_with_a_4xx(source, body, delivery, stamp, event):
    headers = _signed(source.name, body, delivery.strip() or "x", stamp, event)
    try:
        source.parse(headers, body, SECRET, CONTEXT)
    except WebhookRejected as exc:
        assert 400 <= exc.status < 500 and exc.reason and "\n" not in exc.reason


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    from pydantic import SecretStr

    from controller.api.api_context import ControllerContext
    from controller.api.controller_app import create_app
    from controller.controller_settings import ControllerSettings
    from controller.observability import ControllerMetrics
    from controller.rollout.store import RolloutStore

    db = tmp_path_factory.mktemp("fuzz") / "controller.db"
    config = ControllerSettings(
        db_path=db,
        mlflow_webhook_secret=SecretStr(SECRET),
        databricks_webhook_secret=SecretStr(SECRET),
        github_webhook_secret=SecretStr(SECRET),
    )
    store = RolloutStore(db)
    with TestClient(create_app(ControllerContext(config, store, ControllerMetrics(store)))) as client:
        yield client
    store.close()


@FUZZ
@given(source=st.sampled_from([s.name for s in SOURCES]), body=bodies, event=header_text)
def test_the_app_never_answers_500(http, source, body, event):
    signed = _signed(source, body, "fuzz-delivery", str(int(time.time())), event)
    headers = {k: v.encode("utf-8", "surrogatepass") for k, v in signed.items()}  # bytes on the wire
    assert http.post(f"/webhooks/{source}", content=body, headers=headers).status_code < 500


def documents(*field_names: str) -> st.SearchStrategy[object]:
    """Nested lists and mappings whose keys are mostly the loader's own field names, any value."""
    names = st.sampled_from([*field_names, "x"])
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(names, inner, max_size=5)),
        max_leaves=20,
    )


policy_docs = documents(
    "name",
    "steps",
    "weight",
    "min_samples",
    "metrics",
    "kind",
    "approval",
    "traffic_mode",
    "max_duration_s",
    "quantiles",
    "required",
)
routing_docs = documents("model", "versions", "version", "uri", "weight", "role", "shadow", "enabled")


@FUZZ
@given(doc=policy_docs)
def test_a_policy_document_loads_or_names_its_fault(doc):
    try:
        parse_policy(doc, "fuzz.yaml")
    except PolicyError as exc:
        assert str(exc).startswith("fuzz.yaml") and "\n" not in str(exc)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=300), policy_docs.map(lambda d: yaml.safe_dump(d).encode())))
def test_a_policy_file_loads_or_names_its_fault(tmp_path_factory, raw):
    path: Path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_bytes(raw)
    try:
        load_policy(path)
    except PolicyError as exc:
        assert str(path) in str(exc)


@FUZZ
@given(doc=routing_docs)
def test_a_routing_file_loads_or_is_a_validation_error(doc):
    try:
        config = RoutingConfig.model_validate(doc)
    except ValidationError:
        return
    assert sum(v.weight for v in config.versions) == 100
    assert "\n" not in config.model and all("\n" not in v.version for v in config.versions)
