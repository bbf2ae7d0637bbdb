"""The policy's `serving` section: bad input is refused when the policy loads, naming the field; the
worked `custom` example of docs/servers.md loads and renders what the page says; the CLI exits 2 with
the reason for a bad profile."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from canaryflow.app.cli import app
from gitops.model import RenderRequest
from gitops.render import render
from policies import PolicyError, parse_policy
from tests.gitops.conftest import GOLDEN_OPTIONS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "servers.md"
STEPS = [{"weight": 10}]


@pytest.mark.parametrize(
    ("serving", "message"),
    [
        ({"profile": "nope"}, "serving.profile: Input should be 'canaryflow', 'vllm'"),
        ({"profile": "custom"}, "serving.custom: required by profile custom"),
        (
            {"profile": "custom", "custom": {"image": "x:1", "args": ["--m", "${model_path}"]}},
            "serving.custom.args: unknown parameter ${model_path}",
        ),
        (
            {"profile": "custom", "custom": {"image": "x:1", "args": ["--port", "${port}"]}},
            "serving.custom: missing parameter: no command, args or env names ${model_dir} or ${model_uri}",
        ),
        ({"profile": "custom", "custom": {"image": "x:1", "args": ["${model_dir"]}}, "malformed placeholder"),
        ({"profile": "kserve-runtime"}, "serving.model_format: required by profile kserve-runtime"),
        (
            {"profile": "vllm", "model_format": "sklearn"},
            "serving.model_format: only for profile kserve-runtime",
        ),
        ({"profile": "vllm", "extra_args": ["--x=${nope}"]}, "serving.extra_args: unknown parameter ${nope}"),
        ({"profile": "canaryflow", "image": "x:1"}, "serving.image: profile canaryflow runs the image"),
    ],
)
def test_bad_serving_sections_are_refused_naming_the_field(serving: dict, message: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(message)):
        parse_policy({"steps": STEPS, "serving": serving})


def test_the_worked_custom_example_renders_what_the_docs_say() -> None:
    block = re.search(r"```yaml\n# policies/team-embedder.yaml\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert block, "docs/servers.md lost its worked example"
    policy = parse_policy(yaml.safe_load(block.group(1)))
    request = RenderRequest(
        model="minilm",
        environment="production",
        baseline_version="4",
        traffic_mode=policy.traffic_mode,
        serving=policy.serving,
        sources={"4": "s3://models/minilm/4/artifacts/model"},
    )
    files = render(request, GOLDEN_OPTIONS).files
    deployment = yaml.safe_load(files["apps/minilm/overlays/production/deployment-v4.yaml"])
    pod = deployment["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["args"] == [
        "--artifact-uri",
        "s3://models/minilm/4/artifacts/model",
        "--dst-path",
        "/mnt/models",
    ]
    (container,) = pod["containers"]
    assert container["command"] + container["args"] == [
        "uvicorn",
        "embedder.app:app",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"EMBEDDER_MODEL_DIR": "/mnt/models/model", "EMBEDDER_MODEL_VERSION": "4"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    monitor = yaml.safe_load(files["apps/minilm/base/podmonitor.yaml"])
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--profile", "nope"], "--profile: serving.profile: Input should be"),
        (["--profile", "tei", "--mode", "kserve-raw"], "is not a storageUri KServe reads"),
        (["--profile", "tei", "--source", "four=s3://x"], "--source: 'four=s3://x' is not VERSION=URI"),
    ],
)
def test_the_cli_refuses_a_bad_serving_choice_with_exit_2(
    extra: list[str], message: str, tmp_path: Path
) -> None:
    args = ["gitops", "render", "--model", "minilm", "--version", "4", "--out", str(tmp_path / "out")]
    args += ["--repo-url", "https://example.com/gitops.git", *extra]
    result = CliRunner().invoke(app, args, env={"CANARYFLOW_CONTROLLER_REGISTRY_TRACKING_URI": ""})
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()
