"""`canaryflow install render --replicas N [--shards M]`: replicas on the shared PostgreSQL, a leader by
a Lease (or shards leased in the database); built with the real Kustomize, validated strictly, and the
rendered settings accepted by the controller's own settings."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from canaryflow.app.cli import app
from canaryflow.app.install import InstallOptions, render, write
from canaryflow.app.install.options import CONFIG_MAP, CONTROLLER, DATABASE_URL_KEY, LEADER_ROLE
from controller.controller_settings import ControllerSettings
from tests.install.conftest import kustomize, one


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for label, options in (
        ("lease", InstallOptions(replicas=3)),
        ("shards", InstallOptions(replicas=3, shards=4)),
    ):
        root = tmp_path_factory.mktemp(f"install-ha-{label}")
        write(render(options), root)
        out[label] = kustomize(root / "overlays" / "gpu")
    return out


def test_every_object_validates(ha, validator, argo_schema) -> None:
    for docs in ha.values():
        for doc in docs:
            (argo_schema.validate if doc["kind"] == "WorkflowTemplate" else validator.validate_document)(doc)


def test_replicas_share_the_database_and_elect_a_leader_by_a_lease(ha, monkeypatch) -> None:
    docs = ha["lease"]
    spec = one(docs, "Deployment", CONTROLLER)["spec"]
    assert spec["replicas"] == 3 and spec["strategy"]["type"] == "RollingUpdate"
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True  # the Lease is read through the API
    assert {"name": "state", "emptyDir": {"sizeLimit": "256Mi"}} in pod["volumes"]
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    (container,) = pod["containers"]
    url = next(e for e in container["env"] if e["name"] == DATABASE_URL_KEY)
    assert url["valueFrom"]["secretKeyRef"]["optional"] is False  # no database: the pod does not start
    role = one(docs, "Role", LEADER_ROLE)
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    binding = one(docs, "RoleBinding", LEADER_ROLE)
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    data = one(docs, "ConfigMap", CONFIG_MAP)["data"]
    for key, value in {**data, DATABASE_URL_KEY: "postgresql://cf:pw@db.canaryflow.svc/canaryflow"}.items():
        monkeypatch.setenv(key, value)
    settings = ControllerSettings()
    assert settings.leader_election == "kubernetes" and settings.leader_lease_namespace == "canaryflow"
    assert settings.shards == 1 and settings.database_url is not None


def test_shards_lease_in_the_database(ha) -> None:
    docs = ha["shards"]
    data = one(docs, "ConfigMap", CONFIG_MAP)["data"]
    assert (
        data["CANARYFLOW_CONTROLLER_SHARDS"] == "4"
        and data["CANARYFLOW_CONTROLLER_LEADER_ELECTION"] == "database"
    )
    assert not [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == LEADER_ROLE]
    assert (
        one(docs, "Deployment", CONTROLLER)["spec"]["template"]["spec"]["automountServiceAccountToken"]
        is False
    )


def test_shards_without_replicas_are_refused_naming_the_option(tmp_path) -> None:
    result = CliRunner().invoke(app, ["install", "render", "--out", str(tmp_path / "x"), "--shards", "2"])
    assert result.exit_code == 2 and "--shards" in result.output
