"""Signed deliveries an attacker holding a secret (or a buggy sender) could send: each is a 4xx with a
one-line reason and nothing stored, never a 500 and never acknowledged to fail on every tick after.

- an integer of more than 4,300 digits (Python's conversion limit) in any field: a plain ValueError
  from `json.loads` was a 500 before the guarded reader;
- a pull-request number of 2^63 or more: acknowledged (202) before, then "Python int too large to
  convert to SQLite INTEGER" on every reconcile tick;
- NaN, Infinity, a body that is not UTF-8, nesting past the limit.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from controller.webhooks.signing import sign_databricks, sign_github, sign_mlflow
from tests.controller.conftest import SECRET

HUGE = b"9" * 5000


def _mlflow(body: bytes) -> tuple[str, dict[str, str], bytes]:
    did, ts = "d-1", str(int(time.time()))
    headers = {
        "X-MLflow-Delivery-Id": did,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": sign_mlflow(SECRET, did, ts, body),
    }
    return "/webhooks/mlflow", headers, body


def _databricks(body: bytes) -> tuple[str, dict[str, str], bytes]:
    return "/webhooks/databricks", {"X-Databricks-Signature": sign_databricks(SECRET, body)}, body


def _github(body: bytes) -> tuple[str, dict[str, str], bytes]:
    headers = {
        "X-GitHub-Event": "pull_request_review",
        "X-GitHub-Delivery": "g-1",
        "X-Hub-Signature-256": sign_github(SECRET, body),
    }
    return "/webhooks/github", headers, body


def _review(number: bytes) -> bytes:
    at = datetime.now(UTC).isoformat().encode()
    return (
        b'{"action": "submitted", "review": {"state": "approved", "submitted_at": "' + at + b'", '
        b'"commit_id": "' + b"a" * 40 + b'"}, "repository": {"full_name": "o/r"}, '
        b'"pull_request": {"number": ' + number + b"}}"
    )


MLFLOW = b'{"entity": "model_version_alias", "action": "created", "timestamp": %s, "data": %s}'
CASES = {
    "mlflow data.version of 5000 digits": (
        _mlflow(MLFLOW % (b"1", b'{"name": "m", "alias": "challenger", "version": ' + HUGE + b"}")),
        400, "an integer of 5000 digits"),
    "mlflow timestamp of 5000 digits": (
        _mlflow(MLFLOW % (HUGE, b'{"name": "m", "alias": "challenger", "version": "2"}')),
        400, "an integer of 5000 digits"),
    "databricks event_timestamp of 5000 digits": (
        _databricks(b'{"event": "MODEL_VERSION_CREATED", "event_timestamp": ' + HUGE + b"}"),
        400, "an integer of 5000 digits"),
    "github pull_request.number of 5000 digits": (_github(_review(HUGE)), 400, "an integer of 5000 digits"),
    "github pull_request.number 2^63": (_github(_review(str(2**63).encode())), 422, "pull_request.number"),
    "github pull_request.number 2^64+1": (
        _github(_review(str(2**64 + 1).encode())), 422, "pull_request.number"),
    "mlflow NaN": (_mlflow(MLFLOW % (b"NaN", b'{"name": "m", "alias": "c", "version": "2"}')), 400, "NaN"),
    "mlflow -Infinity": (
        _mlflow(MLFLOW % (b"-Infinity", b'{"name": "m", "alias": "c", "version": "2"}')), 400, "-Infinity"),
    "databricks latin-1 body": (
        _databricks(b'{"event": "MODEL_VERSION_CREATED", "model_name": "caf\xe9"}'), 400, "not UTF-8"),
    "mlflow nested 10k deep": (_mlflow(b"[" * 10_000 + b"]" * 10_000), 400, "nested too deeply"),
    "github nested 100 deep": (
        _github(b'{"pull_request": ' + b'{"a": ' * 100 + b"1" + b"}" * 101), 400, "nested too deeply"),
    "github repository 5000 characters": (
        _github(_review(b"3").replace(b'"o/r"', b'"' + b"r" * 5000 + b'"')), 422, "repository"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_signed_delivery_is_a_4xx_and_stores_nothing(client, store, case):
    (path, headers, body), status, reason = CASES[case]
    if path == "/webhooks/mlflow":  # signed now: the cases are built when the module is collected
        path, headers, body = _mlflow(body)
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert reason in error and "\n" not in error, error
    assert store.inbox() == []


def test_the_largest_pull_request_number_the_store_holds_is_accepted(client, store):
    path, headers, body = _github(_review(str(2**63 - 1).encode()))
    assert client.post(path, content=body, headers=headers).status_code == 202
    [item] = store.inbox()
    assert item.event["pr_number"] == 2**63 - 1
