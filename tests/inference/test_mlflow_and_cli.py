"""Loading a version from a real MLflow registry (`models:/name/N`), and the `canaryflow serve` CLI."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from canaryflow.adapters.model_assets import register_minilm
from canaryflow.app.cli import app
from canaryflow.app.commands.serve import routing_from_uris
from tests.inference.conftest import SENTENCES, routing, running_server


@pytest.mark.timeout(300)
def test_serves_a_registry_version(mlflow_server, st_model) -> None:
    version = register_minilm(mlflow_server.tracking_uri, "serve-minilm")
    config = routing((version, f"models:/serve-minilm/{version}", 100, "stable"))
    with (
        running_server(config, None, tracking_uri=mlflow_server.tracking_uri) as server,
        server.client() as client,
    ):
        response = client.post("/v1/embeddings", json={"input": SENTENCES[:3], "model": "minilm"})
        assert response.status_code == 200
        assert response.headers["X-Model-Version"] == version
        got = np.array([d["embedding"] for d in response.json()["data"]])
        np.testing.assert_allclose(got, st_model.encode(SENTENCES[:3]), atol=1e-5)


def test_routing_from_uris_numbers_versions_and_splits() -> None:
    config = routing_from_uris("minilm", ["models:/minilm/3", "models:/minilm/4"], [], [90, 10])
    assert [(v.version, v.weight, v.role) for v in config.versions] == [
        ("3", 90, "baseline"),
        ("4", 10, "canary"),
    ]
    single = routing_from_uris("minilm", ["/models/a"], [], [])
    assert [(v.version, v.weight) for v in single.versions] == [("1", 100)]


def test_help() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--model-uri" in result.output and "--routing-file" in result.output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ([], "--model-uri"),
        (["--model-uri", "/m"], "--model-name"),
        (["--model-uri", "/a", "--model-uri", "/b", "--model-name", "m", "--weights", "50"], "--weights"),
        (["--model-uri", "/a", "--model-name", "m", "--weights", "90"], "add up to 100"),
        (["--model-uri", "/a", "--model-name", "Bad_Name"], "Kubernetes name"),
        (["--model-uri", "/a", "--model-name", "m", "--port", "70000"], "port"),
        (["--model-uri", "/a", "--model-name", "m", "--max-resident-versions", "0"], "max_resident_versions"),
        (["--routing-file", "/nonexistent/routing.yaml"], "cannot read"),
    ],
)
def test_bad_usage_exits_2_with_reason(args: list[str], reason: str) -> None:
    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 2, result.output
    assert reason in result.output


def test_bad_routing_file_exits_2(tmp_path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text("model: minilm\nversions:\n  - {version: '1', uri: /m, weight: 60}\n")
    result = CliRunner().invoke(app, ["serve", "--routing-file", str(path)])
    assert result.exit_code == 2
    assert "weights must add up to 100" in result.output
