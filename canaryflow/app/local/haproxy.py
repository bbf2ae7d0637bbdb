"""A real HAProxy (Debian package `haproxy`) splitting one model's traffic between its versions by weight.

On a cluster a mesh or a Gateway reads the committed router object (an HTTPRoute's backend weights, an
Istio VirtualService) and splits requests between the versions' pods. Here HAProxy does the splitting
for servers that cannot route between versions themselves (every third-party server): one frontend,
one backend per model, one `server` line per version with its weight. A new split is applied by
rewriting the configuration and reloading HAProxy in master-worker mode (SIGUSR2): the new worker takes
new connections, the old one finishes the requests it holds, so no request is dropped by a step.

Weights are HAProxy's (0–256, proportional within the backend); a weight of 0 keeps a server defined
but sends it nothing, as a backendRef of weight 0 does.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from canaryflow.app.local.process import ManagedProcess, ProcessStartError, free_port

INSTALL_HINT = "install it with: apt-get install -y haproxy (Debian/Ubuntu, as root)"


class HAProxyNotInstalled(RuntimeError):
    pass


@dataclass(frozen=True)
class Upstream:
    """One version's server as the proxy reaches it: its address and the share of requests it gets."""

    host: str
    port: int
    weight: int


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


def render_config(
    *, port: int, socket_path: Path, backend: str, upstreams: Mapping[str, Upstream], health_path: str
) -> str:
    """The whole configuration: loopback frontend, one weighted backend whose servers are health-checked
    on `health_path` (a server that fails its check gets no traffic, as a pod that is not ready)."""
    servers = "".join(
        f"    server {name} {up.host}:{up.port} weight {up.weight} check inter 1s fall 2 rise 1\n"
        for name, up in sorted(upstreams.items())
    )
    return (
        "global\n"
        "    maxconn 4096\n"
        f"    stats socket {socket_path} mode 600 level admin expose-fd listeners\n"
        "defaults\n"
        "    mode http\n"
        "    option httplog\n"
        "    timeout connect 2s\n"
        "    timeout client 60s\n"
        "    timeout server 60s\n"
        "    retries 2\n"
        "    option redispatch\n"
        "frontend front\n"
        f"    bind 127.0.0.1:{port}\n"
        f"    default_backend {backend}\n"
        f"backend {backend}\n"
        "    balance roundrobin\n"
        f"    option httpchk GET {health_path}\n"
        f"{servers}"
    )


def check_config(binary: str, config: Path) -> None:
    """`haproxy -c`: refuse a configuration before a reload could leave the proxy without one."""
    done = subprocess.run(
        [binary, "-c", "-q", "-f", str(config)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ValueError(f"haproxy refused {config}: {(done.stderr or done.stdout).strip()}")


class HAProxyFront:
    """One HAProxy process (master-worker) in front of one model's versions."""

    def __init__(self, workdir: Path, backend: str, health_path: str, port: int | None = None) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise HAProxyNotInstalled(f"haproxy is not installed; {INSTALL_HINT}")
        self.binary = binary
        self.workdir = workdir
        self.backend = backend
        self.health_path = health_path
        self.port = port or free_port()
        self.config_path = workdir / "haproxy.cfg"
        self.socket_path = workdir / "haproxy.sock"
        self.upstreams: dict[str, Upstream] = {}
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write(self, upstreams: Mapping[str, Upstream]) -> None:
        text = render_config(
            port=self.port,
            socket_path=self.socket_path,
            backend=self.backend,
            upstreams=upstreams,
            health_path=self.health_path,
        )
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        check_config(self.binary, tmp)
        os.replace(tmp, self.config_path)

    def start(self, upstreams: Mapping[str, Upstream], timeout: float = 20.0) -> HAProxyFront:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write(upstreams)
        argv = [self.binary, "-W", "-db", "-f", str(self.config_path)]
        self.process = ManagedProcess("haproxy", argv, self.workdir / "haproxy.log", cwd=self.workdir)
        self.process.wait_until(lambda: self._weights() == _weights(upstreams), timeout, "serving")
        self.upstreams = dict(upstreams)
        return self

    def apply(self, upstreams: Mapping[str, Upstream], timeout: float = 20.0) -> None:
        """Serve `upstreams` from now on: rewrite, reload, and return once the new worker reports them."""
        if self.process is None:
            raise RuntimeError("haproxy is not started")
        if dict(upstreams) == self.upstreams:
            return
        self._write(upstreams)
        os.kill(self.process.pid, signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while self._weights() != _weights(upstreams):
            if not self.process.alive() or time.monotonic() > deadline:
                raise ProcessStartError(f"haproxy did not take the new weights:\n{self.process.log_tail()}")
            time.sleep(0.1)
        self.upstreams = dict(upstreams)

    def _weights(self) -> dict[str, int] | None:
        """Server -> weight as the running worker has them (`show stat` on the admin socket)."""
        try:
            text = _admin(self.socket_path, "show stat")
        except OSError:
            return None
        rows = csv.DictReader(line.removeprefix("# ") for line in text.splitlines() if line.strip())
        return {
            row["svname"]: int(row["weight"] or 0)
            for row in rows
            if row.get("pxname") == self.backend and row.get("svname") not in ("FRONTEND", "BACKEND")
        }

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def _weights(upstreams: Mapping[str, Upstream]) -> dict[str, int]:
    return {name: up.weight for name, up in upstreams.items()}


def _admin(path: Path, command: str, timeout: float = 2.0) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
