"""Bad input answered with a reason, never a crash (issue 15, finding 6): HTTP 4xx from the controller,
exit 2 and one line from the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from canaryflow.kernel.types import RolloutSpec
from controller.webhooks.signing import sign_databricks, sign_mlflow
from tests.controller.conftest import SECRET

CLI = str(Path(sys.executable).with_name("canaryflow"))


@pytest.mark.parametrize("field", ["model", "canary_version", "rollout_id"])
def test_a_trailing_newline_is_not_a_name_or_a_version(field):
    good = {"rollout_id": "r-1", "model": "minilm", "baseline_version": "1", "canary_version": "2"}
    RolloutSpec(**good)
    with pytest.raises(ValidationError):
        RolloutSpec(**{**good, field: good[field] + "\n"})


def _databricks(client, timestamp_json: str):
    body = (
        '{"event": "MODEL_VERSION_TRANSITIONED_STAGE", "model_name": "minilm", "version": "3", '
        f'"to_stage": "Production", "event_timestamp": {timestamp_json}}}'
    ).encode()
    return client.post(
        "/webhooks/databricks",
        content=body,
        headers={"X-Databricks-Signature": sign_databricks(SECRET, body)},
    )


@pytest.mark.parametrize("timestamp", ["NaN", "Infinity", "-Infinity", "1" + "0" * 399, "true", '"1"'])
def test_databricks_timestamp_that_is_no_time_is_refused(client, store, timestamp):
    answer = _databricks(client, timestamp)
    assert answer.status_code == 400, answer.text
    assert "event_timestamp" in answer.json()["error"]
    assert store.inbox() == []


def _mlflow(client, body: bytes, timestamp: str):
    did = str(uuid.uuid4())
    headers = {
        "X-MLflow-Delivery-Id": did,
        "X-MLflow-Timestamp": timestamp,
        "X-MLflow-Signature": sign_mlflow(SECRET, did, timestamp, body),
    }
    return client.post("/webhooks/mlflow", content=body, headers=headers)


def test_mlflow_timestamp_of_400_digits_is_a_400(client, store):
    body = json.dumps({"entity": "model_version_alias", "action": "created", "data": {}}).encode()
    answer = _mlflow(client, body, "9" * 400)
    assert answer.status_code == 400 and "X-MLflow-Timestamp" in answer.json()["error"]


def test_json_nested_30k_deep_is_a_400(client, store):
    body = b"[" * 30_000 + b"]" * 30_000  # under the 64 kB body limit of the fixture
    answer = _mlflow(client, body, str(int(time.time())))
    assert answer.status_code == 400 and "nested too deeply" in answer.json()["error"]
    deep = _databricks(client, "1" + "[" * 30_000)
    assert deep.status_code in (400, 401)


def _render(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [CLI, "gitops", "render", "--version", "2", "--out", str(tmp_path / "out"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def _policies(tmp_path: Path) -> list[tuple[str, str]]:
    deep = tmp_path / "deep.yaml"
    deep.write_text("steps: " + "[" * 100_000)
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    return [(str(deep), "nested too deeply"), (str(latin), "not UTF-8"), ("/dev/zero", "not a regular file")]


def test_cli_refuses_unusable_policies_in_one_line(tmp_path):
    for policy, why in _policies(tmp_path):
        result = _render(tmp_path, "--model", "minilm", "--policy", policy)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and why in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    result = _render(tmp_path, "--model", "minilm\n")
    assert result.returncode == 2 and "--model" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("doc", "refusal"),
    [
        ({"a": [1, 2, {"b": float("nan")}]}, "doc.a[2].b: nan is not a finite number"),
        ({"a": {"deep": [0.5, float("-inf")]}, "z": 1}, "doc.a.deep[1]: -inf is not a finite number"),
        ([1, "ok", "\ud800"], "doc[2]: a string holding a lone surrogate (\\ud800)"),
        ({"n": 10**300}, "doc.n: an integer of more than 64 digits"),
        ({"\udc00": 1}, "doc: a string holding a lone surrogate (\\udc00)"),
        (json.loads("[" * 70 + "]" * 70), "doc: nested too deeply (more than 64 levels)"),
    ],
)
def test_a_parsed_tree_is_refused_naming_the_path_of_the_value(doc, refusal):
    """`check_tree` walks a document without paths first (most are fine: a step's verdict on every
    tick); a refused one is still named where it stands."""
    from canaryflow.kernel.guarded_input import InputRefused, check_tree

    with pytest.raises(InputRefused) as refused:
        check_tree(doc, "doc")
    assert str(refused.value) == refusal
    check_tree({"fine": [[1, 2.5, "é", None, True, {"k": -3}]] * 1000}, "doc")  # and a fine one passes
