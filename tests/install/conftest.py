"""Fixtures of the install tests: the rendered tree built by the real Kustomize (`kubectl kustomize`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from canaryflow.app.install import InstallOptions, render, write
from gitops.validate import ManifestValidator
from tests.gitops.conftest import SHARED_SCHEMAS
from tests.workflows.conftest import argo_schema  # noqa: F401 - the Argo schema fixture, reused

FULL = InstallOptions(
    with_inference=True,
    gitops_repo_url="https://github.com/example/gitops.git",
    github_repo="example/gitops",
    webhook_hostname="canaryflow.example.com",
    monitor_labels={"release": "kube-prometheus-stack"},
)


def kustomize(folder: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize` builds from `folder` (the binary is required, never faked)."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is required for the install tests"
    built = subprocess.run([kubectl, "kustomize", str(folder)], check=True, capture_output=True, text=True)
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Overlay -> built objects, for the plain render and the one with every option set."""
    out: dict[str, list[dict[str, Any]]] = {}
    for label, options in (("plain", InstallOptions()), ("full", FULL)):
        root = tmp_path_factory.mktemp(f"install-{label}")
        write(render(options), root)
        for overlay in ("gpu", "cpu"):
            out[f"{label}/{overlay}"] = kustomize(root / "overlays" / overlay)
    return out


@pytest.fixture(scope="session")
def validator() -> ManifestValidator:
    return ManifestValidator("1.33", SHARED_SCHEMAS if SHARED_SCHEMAS.is_dir() else None)


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]
