"""The built-in profiles render only what their servers accept: every flag on a rendered command line,
every `MLSERVER_*` setting, every probe path and port, and every KServe storage scheme is one the
server's own source defines (tests/gitops/servers/*.txt, extracted at recorded commits, PROVENANCE.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from canaryflow.kernel.contracts.routing import RoutedVersion
from canaryflow.kernel.serving import ServingConfig
from gitops.model import RenderRequest
from gitops.profiles import workload
from gitops.profiles.kserve_runtime import MODEL_SERVERS, STORAGE_PREFIXES
from gitops.profiles.mlserver import METRICS_PORT as MLSERVER_METRICS_PORT
from gitops.profiles.triton import METRICS_PORT as TRITON_METRICS_PORT
from tests.gitops.conftest import GOLDEN_OPTIONS

SERVERS = Path(__file__).parent / "servers"
FIXTURE = {
    "vllm": "vllm",
    "triton": "triton",
    "tei": "tei",
    "mlserver": "mlserver",
    "kserve-runtime": "kserve",
}


def _facts(name: str) -> dict[str, set[str]]:
    facts: dict[str, set[str]] = {}
    for line in (SERVERS / f"{name}.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            what, _, value = line.partition(" ")
            facts.setdefault(what, set()).add(value)
    return facts


def _serving(profile: str) -> ServingConfig:
    if profile == "kserve-runtime":
        return ServingConfig(profile="kserve-runtime", model_format="sklearn")
    return ServingConfig.model_validate({"profile": profile})


def _server(profile: str, kserve: bool):  # type: ignore[no-untyped-def]
    request = RenderRequest(
        model="minilm",
        environment="production",
        baseline_version="3",
        serving=_serving(profile),
        sources={"3": "s3://models/minilm/3/artifacts/model"},
    )
    routed = RoutedVersion(version="3", uri="models:/minilm/3", weight=100)
    return workload.server_for(request, routed, GOLDEN_OPTIONS, 8080 if kserve else 8000, kserve)


def _flags(args: list[str]) -> list[str]:
    return [arg.split("=", 1)[0] for arg in args if arg.startswith("--")]


@pytest.mark.parametrize("kserve", [False, True], ids=["deployment", "kserve"])
@pytest.mark.parametrize("profile", ["vllm", "triton", "tei", "kserve-runtime"])
def test_every_rendered_flag_is_one_the_server_defines(profile: str, kserve: bool) -> None:
    server = _server(profile, kserve)
    if server.runtime_model is not None:  # KServe's ServingRuntime owns the command line there
        return
    flags = _facts(FIXTURE[profile])["flag"]
    rendered = _flags(server.args)
    assert rendered, "the profile renders no flags"
    assert set(rendered) <= flags, sorted(set(rendered) - flags)


@pytest.mark.parametrize("profile", ["vllm", "triton", "tei", "mlserver", "kserve-runtime"])
def test_probes_and_metrics_are_endpoints_the_server_serves(profile: str) -> None:
    server = _server(profile, kserve=False)
    endpoints = _facts(FIXTURE[profile])["endpoint"]
    readiness = server.readiness_path.replace("/minilm", "/{model_name}")
    assert {readiness, server.liveness_path} <= endpoints
    if profile != "kserve-runtime":  # KServe's model servers serve /metrics too (prometheus.kserve.io/path)
        assert server.metrics_path in endpoints


def test_metrics_ports_are_the_servers_defaults() -> None:
    assert f"metrics-port={TRITON_METRICS_PORT}" in _facts("triton")["default"]
    assert f"metrics_port={MLSERVER_METRICS_PORT}" in _facts("mlserver")["default"]
    assert "--metrics-port" in _facts("triton")["flag"]


def test_the_mlserver_command_and_settings_are_mlservers() -> None:
    server = _server("mlserver", kserve=False)
    facts = _facts("mlserver")
    assert server.command[:2] == ["mlserver", "start"] and "start" in facts["command"]
    assert {name for name, _ in server.env} <= facts["env"]


def test_vllm_runs_its_openai_server_module() -> None:
    assert " ".join(_server("vllm", kserve=False).command) in _facts("vllm")["command"]


def test_kserve_facts_match_the_kserve_runtime_profile() -> None:
    facts = _facts("kserve")
    assert set(MODEL_SERVERS) <= facts["format"]
    assert set(STORAGE_PREFIXES) == facts["storage"]
    assert "STORAGE_URI" in facts["env"]
