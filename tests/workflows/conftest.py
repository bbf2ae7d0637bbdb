"""Fixtures for the workflow tests: the Argo JSON schema from ../shared, small policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from policies.model import ApprovalPolicy, Policy, TrafficStep

REPO_ROOT = Path(__file__).resolve().parents[2]
ARGO_SCHEMA = REPO_ROOT.parent / "shared" / "schemas" / "argo" / "schema.json"


class ArgoSchema:
    def __init__(self, path: Path) -> None:
        self._definitions = json.loads(path.read_text())["definitions"]

    def validate(self, doc: dict[str, Any]) -> None:
        kind = doc["kind"]
        ref = f"#/definitions/io.argoproj.workflow.v1alpha1.{kind}"
        schema = {"$ref": ref, "definitions": self._definitions}
        jsonschema.validate(doc, schema, cls=jsonschema.Draft7Validator)


@pytest.fixture(scope="session")
def argo_schema() -> ArgoSchema:
    assert ARGO_SCHEMA.is_file(), f"Argo schema expected at {ARGO_SCHEMA} (../shared beside the repo)"
    return ArgoSchema(ARGO_SCHEMA)


def short_policy(*weights: int, approval: bool = False, min_samples: int = 5) -> Policy:
    return Policy(
        name="fast",
        steps=[TrafficStep(weight=w, min_duration_s=0.5, min_samples=min_samples) for w in weights],
        approval=ApprovalPolicy(required=approval, environments=["production"]),
        max_duration_s=300,
    )
