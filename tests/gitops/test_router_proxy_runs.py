"""The configmap mode's proxy runs: the nginx configuration rendered into the routing ConfigMap, taken
from the Kustomize build, is started with Debian's nginx in front of two local servers standing for the
versions' Services, and it splits requests by the committed weights, keeping a sticky caller on one arm.

Translated as a kubelet and cluster DNS would provide it: each `<model>-v<N>:80` Service is a local
port, the listen port a free one, and the pid and temp files go to the test's folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from canaryflow.app.local.kubelet import kustomize_build
from canaryflow.kernel.contracts.serving_config import ServingConfig
from gitops.files import write_rendering
from gitops.model import RenderRequest
from gitops.render import overlay_dir, render
from tests.gitops.conftest import GOLDEN_OPTIONS
from tests.support.net import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _backend(version: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = version.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.skipif(
    not Path(NGINX).exists() and os.environ.get("CI") != "true",  # in CI a missing nginx is a failure
    reason="nginx (Debian package nginx-light) is not installed",
)
def test_the_rendered_proxy_splits_by_the_committed_weights(tmp_path: Path) -> None:
    request = RenderRequest(
        model="minilm",
        environment="production",
        baseline_version="3",
        canary_version="4",
        weight=20,
        traffic_mode="configmap",
        serving=ServingConfig(profile="tei"),
        sources={"3": "s3://m/3/model", "4": "s3://m/4/model"},
    )
    write_rendering(tmp_path / "repo", render(request, GOLDEN_OPTIONS))
    objects = kustomize_build(tmp_path / "repo" / overlay_dir("minilm", "production"))
    (configmap,) = [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "minilm-routing"
    ]
    config = configmap["data"]["nginx.conf"]
    backends = {v: _backend(v) for v in ("3", "4")}
    port = free_port()
    for version, server in backends.items():
        config = config.replace(f"server minilm-v{version}:80;", f"server 127.0.0.1:{server.server_port};")
    config = config.replace(f"listen {GOLDEN_OPTIONS.port};", f"listen 127.0.0.1:{port};")
    config = re.sub(r"/tmp/", f"{tmp_path}/", config)
    conf = tmp_path / "nginx.conf"
    conf.write_text(config)
    argv = [NGINX, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)]
    checked = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    proxy = subprocess.Popen([*argv, "-g", "daemon off;"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert (
                    httpx.get(f"http://127.0.0.1:{port}/canaryflow-router/ready", timeout=2).status_code
                    == 200
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proxy.poll() is None, "nginx did not start"
                time.sleep(0.1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            served = Counter(client.get("/v1/embeddings").text for _ in range(1000))
            sticky = {client.get("/", headers={"X-Canary-Key": "caller-7"}).text for _ in range(20)}
        assert set(served) == {"3", "4"}
        assert 120 <= served["4"] <= 280, served  # 20% of 1000, far outside chance
        assert len(sticky) == 1
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        for server in backends.values():
            server.shutdown()
