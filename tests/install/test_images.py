"""The Containerfiles, checked where no container engine runs: they parse, their bases are pinned, they
run as the non-root user the manifests expect, they copy every package, and their entry points are
commands the installed CLI accepts and the very ones the rendered manifests run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from canaryflow.app.install.controller import RUN_AS
from canaryflow.app.install.options import CONTROLLER, PORT
from gitops.gitops_settings import RenderOptions
from gitops.model import RenderRequest
from gitops.render import render as render_gitops
from tests.install.conftest import one

ROOT = Path(__file__).resolve().parents[2]
IMAGES = {name: ROOT / "images" / f"{name}.Containerfile" for name in ("controller", "inference")}


def parse(name: str) -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO(IMAGES[name].read_bytes()))


def final_stage(parser: DockerfileParser) -> list[dict[str, Any]]:
    structure = parser.structure
    last_from = max(i for i, s in enumerate(structure) if s["instruction"] == "FROM")
    return structure[last_from:]


def exec_form(stage: list[dict[str, Any]], instruction: str) -> list[str]:
    (entry,) = [s for s in stage if s["instruction"] == instruction]
    value = json.loads(entry["value"])  # exec form only: a shell form would not get signals
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_containerfile_is_pinned_multi_stage_and_non_root(name: str) -> None:
    parser = parse(name)
    bases = parser.parent_images
    assert len(bases) >= 2, "multi-stage: a build stage and a runtime stage"
    for base in bases:
        image, _, tag = base.rpartition(":")
        assert image and tag and tag != "latest" and any(c.isdigit() for c in tag), f"{base} is not pinned"
    stage = final_stage(parser)
    (user,) = [s["value"] for s in stage if s["instruction"] == "USER"]
    assert user.split(":")[0] == str(RUN_AS)  # the uid the Deployment's runAsUser names
    assert not [s for s in stage if s["instruction"] == "RUN" and "pip install" in s["value"]], (
        "tools stay behind"
    )


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_every_package_is_copied(name: str) -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    copied = {s["value"].split()[0] for s in parse(name).structure if s["instruction"] == "COPY"}
    for pattern in packages["include"]:
        folder = pattern.rstrip("*")
        assert folder in copied and (ROOT / folder).is_dir(), f"{folder} is installed but not copied"


def _cli_accepts(argv: list[str]) -> None:
    """`canaryflow <subcommand...> --help` through the installed entry point exits 0."""
    words = [a for a in argv[1:] if not a.startswith("-")][:2]
    executable = Path(sys.executable).parent / argv[0]
    done = subprocess.run([str(executable), *words, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-1000:]


def test_controller_image_runs_what_the_install_manifests_run(built: dict[str, list[dict[str, Any]]]) -> None:
    stage = final_stage(parse("controller"))
    entrypoint, cmd = exec_form(stage, "ENTRYPOINT"), exec_form(stage, "CMD")
    _cli_accepts([*entrypoint, *cmd])
    docs = built["plain/gpu"]
    (container,) = one(docs, "Deployment", CONTROLLER)["spec"]["template"]["spec"]["containers"]
    assert container["command"] == entrypoint and container["args"] == cmd
    assert [s["value"] for s in stage if s["instruction"] == "EXPOSE"] == [str(PORT)]
    for template in one(docs, "WorkflowTemplate")["spec"]["templates"]:
        if "container" in template:  # every rollout step runs `canaryflow workflow step ...`
            assert template["container"]["command"] == entrypoint
            assert template["container"]["args"][:2] == ["workflow", "step"]
    _cli_accepts([*entrypoint, "workflow", "step"])


def test_inference_image_runs_what_the_gitops_render_commits() -> None:
    stage = final_stage(parse("inference"))
    entrypoint, cmd = exec_form(stage, "ENTRYPOINT"), exec_form(stage, "CMD")
    _cli_accepts([*entrypoint, *cmd])
    request = RenderRequest(
        model="minilm", environment="production", baseline_version="1", canary_version="2", weight=20,
        traffic_mode="httproute",
    )  # fmt: skip
    rendering = render_gitops(request, RenderOptions())
    deployments = [text for path, text in rendering.files.items() if "/deployment" in path]
    assert len(deployments) == 2  # baseline and canary
    for text in deployments:
        (container,) = yaml.safe_load(text)["spec"]["template"]["spec"]["containers"]
        assert container["command"] == entrypoint and container["args"][0] == cmd[0]
        assert [s["value"] for s in stage if s["instruction"] == "EXPOSE"] == [
            str(container["ports"][0]["containerPort"])
        ]
