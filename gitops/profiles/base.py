"""The serving-profile interface: what runs one registered version, whichever router places it.

A profile turns a version (`VersionRef`: the model, the version, its pinned registry URI and the
artifact source the registry records for it) into a `Server`: the container (image, command, args,
env), how it gets the artifacts, its port, its health endpoints and where its metrics are. Routers
never look at the profile's name: `gitops.profiles.workload` turns a `Server` into a Deployment's pod
or a KServe predictor, so every router renders every profile through that one mechanism.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from canaryflow.kernel.serving import ServingConfig, expand
from gitops.settings import RenderOptions

# Where a version's artifacts are on the pod's disk: KServe's storage initializer mounts them here,
# and the download init container of the other routers uses the same path, so a template is the same
# under every router.
MODEL_MOUNT = "/mnt/models"


@dataclass(frozen=True)
class VersionRef:
    model: str
    version: str
    uri: str
    """The pinned registry URI, `models:/<registered>/<N>` (what canaryflow's own server loads)."""
    source: str
    """The artifact location the registry records for the version (its `source`), resolved at render
    time; the pinned URI where it was not resolved (the downloader resolves that one itself)."""

    def model_dir(self, kserve: bool) -> str:
        """Where the artifacts are: KServe puts the source's contents at the mount; `mlflow artifacts
        download` puts a directory URI's last component under it (`models:/` URIs: its contents)."""
        if kserve or self.source.startswith("models:/"):
            return MODEL_MOUNT
        name = posixpath.basename(self.source.rstrip("/"))
        return posixpath.join(MODEL_MOUNT, name) if name else MODEL_MOUNT

    def parameters(self, port: int, kserve: bool) -> dict[str, str]:
        """The template parameters of `canaryflow.kernel.serving` for this version."""
        return {
            "model_name": self.model,
            "model_version": self.version,
            "model_uri": self.source,
            "model_dir": self.model_dir(kserve),
            "port": str(port),
        }


@dataclass(frozen=True)
class Server:
    """One version's server, as every router renders it."""

    image: str
    command: list[str]
    args: list[str]
    env: list[tuple[str, str]]
    port: int
    readiness_path: str
    liveness_path: str
    metrics_path: str = "/metrics"
    metrics_port: int | None = None
    """None: metrics are served on `port`."""
    artifacts: Literal["registry", "download"] = "download"
    """`registry`: the server loads the pinned URI itself (canaryflow); `download`: it reads files that
    KServe's storage initializer or the download init container put under the mount."""
    start_timeout_s: int | None = 600
    """How long loading may take before liveness counts (a startupProbe); None: no startupProbe."""
    resources: dict[str, dict[str, str]] = field(default_factory=dict)
    """Overrides of the settings' requests/limits (a custom template's)."""
    multi_version: bool = False
    """It reads the routing file and serves every version in one process (traffic mode configmap)."""
    runtime_model: dict[str, Any] | None = None
    """KServe only: the InferenceService `predictor.model` (a ServingRuntime picks the container)."""


class ServingProfile(Protocol):
    name: ClassVar[str]

    def server(
        self, ref: VersionRef, serving: ServingConfig, options: RenderOptions, port: int, kserve: bool
    ) -> Server:
        """The server of `ref` listening on `port`; `kserve`: KServe runs it (storageUri, port 8080)."""
        ...


def with_extra_args(args: list[str], serving: ServingConfig, values: dict[str, str]) -> list[str]:
    """A built-in server's args followed by the policy's `serving.extra_args`, parameters filled."""
    return [*args, *(expand(arg, values) for arg in serving.extra_args)]
