"""The one-machine stand-in for a cluster serving a third-party server: pods per version, a mesh between.

What Argo CD, the Deployments and a mesh do on a cluster when a routing step is committed, done here
for a server that serves one version per process (MLServer, vLLM, Triton, TEI… every server but
canaryflow's own multi-version one):

- each version in the committed state gets its own server process (its Deployment's pod), started
  and ready before it gets any traffic (a pod's readiness gate);
- a real proxy (HAProxy) splits requests by the committed weights (the HTTPRoute's backend weights);
- Prometheus finds each version's metrics endpoint through file-based discovery, labelled with the
  model and version as the rendered PodMonitor labels a pod's targets (`ARM_MODEL_LABEL`,
  `ARM_VERSION_LABEL`), so the analysis reads only what the server itself exports;
- a version that left the state loses its traffic first, then its process (pruning).

`LocalMesh` is an applier for `canaryflow.app.local.gitops_sync.GitOpsSync`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

from canaryflow.app.local.haproxy import HAProxyFront, Upstream
from canaryflow.app.local.kubelet import ImageEnvironment, containers, kustomize_build, start_pod
from canaryflow.app.local.process import ManagedProcess, free_port
from canaryflow.kernel.contracts import metrics as metric_names
from canaryflow.kernel.contracts.providers import ARM_MODEL_LABEL, ARM_VERSION_LABEL
from canaryflow.kernel.contracts.routing import RoutedVersion, RoutingConfig
from gitops.render import overlay_dir
from gitops.resources import HTTP_PORT_NAME, METRICS_PORT_NAME, VERSION_LABEL

log = logging.getLogger(__name__)


@dataclass
class VersionServer:
    """One version's running pod: where the proxy sends its requests and Prometheus scrapes it."""

    version: str
    processes: list[ManagedProcess]
    port: int
    metrics_port: int
    health_path: str

    @property
    def metrics_target(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


class VersionLauncher(Protocol):
    def start(self, model: str, routed: RoutedVersion) -> VersionServer: ...


class RenderedPods:
    """Starts a version's pod from the overlay the sync checked out (built with real Kustomize), as
    the kubelet would start the pod of that version's Deployment."""

    def __init__(
        self,
        checkout: Path,
        environment: str,
        images: Mapping[str, ImageEnvironment],
        workdir: Path,
        timeout_s: float = 180.0,
    ) -> None:
        self.checkout = checkout
        self.environment = environment
        self.images = images
        self.workdir = workdir
        self.timeout_s = timeout_s

    def start(self, model: str, routed: RoutedVersion) -> VersionServer:
        objects = kustomize_build(self.checkout / overlay_dir(model, self.environment))
        deployment = _deployment(objects, routed.version)
        scratch = self.workdir / f"{model}-v{routed.version}"
        pod = containers([deployment], scratch, port_map=lambda _port: free_port(), environments=self.images)
        processes = start_pod(pod, scratch, self.timeout_s)
        main = next(c for c in pod if not c.init and c.readiness is not None)
        assert main.readiness is not None
        return VersionServer(
            version=routed.version,
            processes=processes,
            port=main.ports[HTTP_PORT_NAME],
            metrics_port=main.ports.get(METRICS_PORT_NAME, main.ports[HTTP_PORT_NAME]),
            health_path=main.readiness.path,
        )


def _deployment(objects: list[dict[str, Any]], version: str) -> dict[str, Any]:
    for obj in objects:
        if obj["kind"] == "Deployment" and obj["metadata"].get("labels", {}).get(VERSION_LABEL) == version:
            return obj
    raise RuntimeError(f"the overlay has no Deployment of version {version} (a traffic mode without one?)")


class LocalMesh:
    def __init__(
        self,
        launcher: VersionLauncher,
        workdir: Path,
        targets_file: Path,
        scraped: Callable[[str], bool] | None = None,
        scrape_timeout_s: float = 60.0,
    ) -> None:
        self.launcher = launcher
        self.workdir = workdir
        self.targets_file = targets_file
        self.servers: dict[str, VersionServer] = {}
        self.front: HAProxyFront | None = None
        # Whether Prometheus scraped a version's pod yet: a new pod gets traffic only once it has, so
        # none of its requests happen before its first scrape (a counter first seen above zero hides
        # them from the analysis, and an arm with no series yet reads as no requests at all).
        self.scraped = scraped
        self.scrape_timeout_s = scrape_timeout_s
        self.model = ""  # the routed model, once a routing state was applied

    @property
    def url(self) -> str:
        if self.front is None:
            raise RuntimeError("the mesh has applied no routing state yet")
        return self.front.url

    def routing_page(self) -> str:
        """`canaryflow_routing_weight{model, version}` of each version the proxy holds, as canaryflow's
        own server exports it: what the controller reads back as the live split."""
        gauge = metric_names.ROUTING_WEIGHT
        lines = [f"# TYPE {gauge} gauge"]
        if self.front is not None and self.model:
            for name, upstream in sorted(self.front.upstreams.items()):
                version = name.removeprefix("v")
                labels = f'{metric_names.MODEL_LABEL}="{self.model}",{metric_names.VERSION_LABEL}="{version}"'
                lines.append(f"{gauge}{{{labels}}} {upstream.weight}")
        return "\n".join(lines) + "\n"

    def ready(self, version: str) -> bool:
        """The version's pod is ready and the proxy holds it (what a readiness check of a canary asks)."""
        return version in self.servers and self.front is not None and f"v{version}" in self.front.upstreams

    def __call__(self, routing: RoutingConfig) -> None:
        self.model = routing.model
        started = []
        for routed in routing.versions:
            if routed.version not in self.servers:
                log.info("starting %s v%s", routing.model, routed.version)
                self.servers[routed.version] = self.launcher.start(routing.model, routed)
                started.append(routed.version)
        kept = {routed.version for routed in routing.versions}
        self._write_targets(routing.model, kept | set(self.servers))
        self._wait_scraped(started)
        upstreams = {
            f"v{routed.version}": Upstream("127.0.0.1", self.servers[routed.version].port, routed.weight)
            for routed in routing.versions
        }
        if self.front is None:
            health = self.servers[routing.versions[0].version].health_path
            self.front = HAProxyFront(self.workdir / "haproxy", routing.model, health)
            self.front.start(upstreams)
        else:
            self.front.apply(upstreams)
        self._write_targets(routing.model, kept)
        for version in sorted(set(self.servers) - kept):
            log.info("stopping %s v%s (no longer in the committed state)", routing.model, version)
            self.servers.pop(version).stop()

    def _wait_scraped(self, versions: list[str]) -> None:
        if self.scraped is None or not versions:
            return
        deadline = time.monotonic() + self.scrape_timeout_s
        while not all(self.scraped(v) for v in versions):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Prometheus has not scraped v{', v'.join(versions)} after {self.scrape_timeout_s:.0f} s"
                )
            time.sleep(0.25)

    def _write_targets(self, model: str, versions: set[str]) -> None:
        """Prometheus file-based discovery: replaced whole, so a scrape never sees half a list."""
        groups = [
            {
                "targets": [self.servers[v].metrics_target],
                "labels": {ARM_MODEL_LABEL: model, ARM_VERSION_LABEL: v},
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


class ReadinessEndpoint:
    """`GET /ready?version=N` answered from the mesh: 200 once version N's pod is ready and the proxy
    holds it, else 503. What the Kubernetes readiness backend reads from the API server (the version's
    Deployment ready, the router serving it) in a cluster; the controller's `http` readiness backend
    reads it here, as it reads canaryflow's own server's `/ready?version=N`."""

    def __init__(self, mesh: LocalMesh) -> None:
        self.mesh = mesh
        self.port = free_port()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ReadinessEndpoint:
        mesh = self.mesh

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urlparse(self.path)
                if query.path == "/metrics":  # the split the proxy applies (the live traffic's reader)
                    page = mesh.routing_page().encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                version = parse_qs(query.query).get("version", [""])[0]
                ok = query.path == "/ready" and bool(version) and mesh.ready(version)
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, name="mesh-readiness", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
