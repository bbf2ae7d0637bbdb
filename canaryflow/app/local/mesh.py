"""The one-machine stand-in for a cluster serving a third-party server: pods per version, a mesh between.

What Argo CD, the Deployments and a mesh do on a cluster when a routing step is committed, done here
for a server that serves one version per process (MLServer, vLLM, Triton, TEI… every server but
canaryflow's own multi-version one):

- each version in the committed state gets its own server process (its Deployment's pod), started
  and ready before it gets any traffic (a pod's readiness gate);
- a real proxy (HAProxy) splits requests by the committed weights (the HTTPRoute's backend weights);
- Prometheus finds each version's metrics endpoint through file-based discovery, labelled with the
  model and version as the rendered PodMonitor labels a pod's targets (`TARGET_MODEL_LABEL`,
  `TARGET_VERSION_LABEL`), so the analysis reads only what the server itself exports;
- a version that left the state loses its traffic first, then its process (pruning).

`LocalMesh` is an applier for `canaryflow.app.local.gitops_sync.GitOpsSync`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Protocol

from canaryflow.app.local.haproxy import HAProxyFront, Upstream
from canaryflow.app.local.mlserver import VersionServer
from canaryflow.kernel.contracts.metrics import TARGET_MODEL_LABEL, TARGET_VERSION_LABEL
from canaryflow.kernel.contracts.routing import RoutedVersion, RoutingConfig

log = logging.getLogger(__name__)


class VersionLauncher(Protocol):
    health_path: str

    def start(self, model: str, routed: RoutedVersion) -> VersionServer: ...


class LocalMesh:
    def __init__(self, launcher: VersionLauncher, workdir: Path, targets_file: Path) -> None:
        self.launcher = launcher
        self.workdir = workdir
        self.targets_file = targets_file
        self.servers: dict[str, VersionServer] = {}
        self.front: HAProxyFront | None = None
        self.model: str | None = None

    @property
    def url(self) -> str:
        if self.front is None:
            raise RuntimeError("the mesh has applied no routing state yet")
        return self.front.url

    def __call__(self, routing: RoutingConfig) -> None:
        self.model = routing.model
        for routed in routing.versions:
            if routed.version not in self.servers:
                log.info("starting %s v%s", routing.model, routed.version)
                self.servers[routed.version] = self.launcher.start(routing.model, routed)
        upstreams = {
            f"v{routed.version}": Upstream("127.0.0.1", self.servers[routed.version].port, routed.weight)
            for routed in routing.versions
        }
        if self.front is None:
            self.front = HAProxyFront(self.workdir / "haproxy", routing.model, self.launcher.health_path)
            self.front.start(upstreams)
        else:
            self.front.apply(upstreams)
        kept = {routed.version for routed in routing.versions}
        self._write_targets(routing.model, kept)
        for version in sorted(set(self.servers) - kept):
            log.info("stopping %s v%s (no longer in the committed state)", routing.model, version)
            self.servers.pop(version).stop()

    def _write_targets(self, model: str, versions: set[str]) -> None:
        """Prometheus file-based discovery: replaced whole, so a scrape never sees half a list."""
        groups = [
            {
                "targets": [self.servers[v].metrics_target],
                "labels": {TARGET_MODEL_LABEL: model, TARGET_VERSION_LABEL: v},
            }
            for v in sorted(versions)
        ]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        os.replace(tmp, self.targets_file)

    def stop(self) -> None:
        if self.front is not None:
            self.front.stop()
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
