"""What a kubelet does with a built overlay, as far as one machine can: the pods' containers as local
processes, and their probes polled as the kubelet polls them.

Input is the output of real Kustomize (`kubectl kustomize DIR`), never our own render, so a
field Kustomize drops or rewrites is seen as the cluster sees it. From each Deployment's pod
template every container's `command`, `args`, `env`, `ports`, `readinessProbe` and `livenessProbe`
is taken as written. Three translations stand for what the container image and the pod network
provide, and nothing else is changed:

- `command[0]` `canaryflow` is the image's entry point: here, the installed `.venv/bin/canaryflow`;
- a `configMap` volume is written out (the built ConfigMap's `data`, one file per key) to a temp
  folder, and an argument under its `mountPath` points into that folder instead;
- `--host 0.0.0.0` (every interface of the pod's own network namespace) becomes 127.0.0.1, because
  servers started by tests listen on loopback only;
- with `port_map`, each containerPort P is forwarded to a local port (as `kubectl port-forward`
  would): `--port P` and the probes on P use the local port, since every pod has its own network
  and here they share one (KServe's predictor listens on a fixed 8080).

Pod specs are read where their kinds keep them: a Deployment's `spec.template.spec`, a KServe
InferenceService's `spec.predictor`; a router that renders another workload kind must add it here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

CANARYFLOW = Path(sys.executable).with_name("canaryflow")
# What the image's environment provides besides the container's `env` (a Python and its packages).
_IMAGE_ENV = ("PATH", "HOME", "PYTHONPATH", "LANG", "TMPDIR", "VIRTUAL_ENV")


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR`, parsed: the objects exactly as Argo CD would apply them."""
    done = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@dataclass(frozen=True)
class Probe:
    path: str
    port: int


@dataclass
class Container:
    """One container of one Deployment, translated to a local process (see the module docstring)."""

    deployment: str
    name: str
    argv: list[str]
    env: dict[str, str]
    ports: dict[str, int]
    readiness: Probe
    liveness: Probe | None
    files: dict[Path, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.deployment}/{self.name}"


def _probe(container: dict[str, Any], key: str, ports: dict[str, int], local: Callable[[int], int]) -> Probe:
    probe = container.get(key)
    if not probe or "httpGet" not in probe:
        raise AssertionError(f"container {container['name']}: no {key}.httpGet")
    port = probe["httpGet"]["port"]
    if isinstance(port, str):
        if port not in ports:
            raise AssertionError(f"{key}: port {port!r} is not a named containerPort ({sorted(ports)})")
        port = ports[port]
    return Probe(path=probe["httpGet"]["path"], port=local(int(port)))


def _pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] == "Deployment":
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]
        elif obj["kind"] == "InferenceService":
            yield obj["metadata"]["name"], obj["spec"]["predictor"]


def _env(container: dict[str, Any]) -> dict[str, str]:
    env = {}
    for var in container.get("env", []):
        if "value" not in var:  # valueFrom (secrets, field refs) has no local meaning
            raise AssertionError(f"env {var['name']}: only literal values can run locally")
        env[var["name"]] = str(var["value"])
    return env


def containers(
    objects: list[dict[str, Any]], scratch: Path, port_map: Callable[[int], int] | None = None
) -> list[Container]:
    """Every container of every pod spec in a built overlay, its volumes written under `scratch`."""
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    found = []
    for name, pod in _pod_specs(objects):
        forwarded: dict[int, int] = {}

        def local(port: int, forwarded: dict[int, int] = forwarded) -> int:
            if port_map is None:
                return port
            return forwarded.setdefault(port, port_map(port))

        volumes: dict[str, Path] = {}
        files: dict[Path, str] = {}
        for volume in pod.get("volumes", []):
            if "configMap" not in volume:
                raise AssertionError(f"{name}: volume {volume['name']} is not a configMap")
            source = configmaps.get(volume["configMap"]["name"])
            if source is None:
                raise AssertionError(f"{name}: ConfigMap {volume['configMap']['name']} is not in the build")
            folder = scratch / name / volume["name"]
            volumes[volume["name"]] = folder
            files |= {folder / key: value for key, value in source.get("data", {}).items()}
        for container in pod["containers"]:
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}
            command = list(container.get("command", []))
            if command[:1] == ["canaryflow"]:
                command[0] = str(CANARYFLOW)
            args = [_local_arg(arg, mounts) for arg in container.get("args", [])]
            declared = {
                p.get("name", str(p["containerPort"])): int(p["containerPort"]) for p in container["ports"]
            }
            liveness = (
                _probe(container, "livenessProbe", declared, local) if "livenessProbe" in container else None
            )
            found.append(
                Container(
                    deployment=name,
                    name=container["name"],
                    argv=[*command, *_forward(_loopback(args), set(declared.values()), local)],
                    env=_env(container),
                    ports={key: local(port) for key, port in declared.items()},
                    readiness=_probe(container, "readinessProbe", declared, local),
                    liveness=liveness,
                    files=files,
                )
            )
    return found


def _local_arg(arg: str, mounts: dict[str, Path]) -> str:
    for mount_path, folder in mounts.items():
        if arg == mount_path or arg.startswith(mount_path.rstrip("/") + "/"):
            return str(folder) + arg[len(mount_path.rstrip("/")) :]
    return arg


def _forward(args: list[str], ports: set[int], local: Callable[[int], int]) -> list[str]:
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg == "--port" and out[i + 1].isdigit() and int(out[i + 1]) in ports:
            out[i + 1] = str(local(int(out[i + 1])))
    return out


def _loopback(args: list[str]) -> list[str]:
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg == "--host" and out[i + 1] == "0.0.0.0":
            out[i + 1] = "127.0.0.1"
    return out


def write_files(container: Container) -> None:
    for path, text in container.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@dataclass
class Running:
    container: Container
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, probe: Probe) -> str:
        return f"http://127.0.0.1:{probe.port}{probe.path}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextmanager
def run_containers(found: list[Container], logs: Path) -> Iterator[list[Running]]:
    """Start every container (as the kubelet starts a pod's), stop them all afterwards."""
    base = {k: os.environ[k] for k in _IMAGE_ENV if k in os.environ}
    started: list[Running] = []
    try:
        for container in found:
            write_files(container)
            log = logs / f"{container.deployment}-{container.name}.log"
            with log.open("wb") as sink:
                process = subprocess.Popen(
                    container.argv, env={**base, **container.env}, stdout=sink, stderr=subprocess.STDOUT
                )
            started.append(Running(container, process, log))
        yield started
    finally:
        for running in started:
            if running.process.poll() is None:
                running.process.terminate()
        for running in started:
            try:
                running.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                running.process.kill()
                running.process.wait(timeout=10)


def wait_until_ready(pods: list[Running], timeout_s: float) -> None:
    """Poll every readiness probe until 200 (and then the liveness probe); a process that exits, or a
    probe that stays failing past `timeout_s`, fails with the container's own output."""
    deadline = time.monotonic() + timeout_s
    pending = list(pods)
    with httpx.Client(timeout=5.0) as client:
        while pending:
            for pod in list(pending):
                code = pod.process.poll()
                if code is not None:
                    raise AssertionError(f"{pod.container.label} exited with {code}:\n{pod.output()}")
                try:
                    ready = client.get(pod.url(pod.container.readiness)).status_code == 200
                except httpx.HTTPError:
                    ready = False
                if ready:
                    if pod.container.liveness is not None:
                        live = client.get(pod.url(pod.container.liveness))
                        if live.status_code != 200:
                            raise AssertionError(f"{pod.container.label}: liveness {live.status_code}")
                    pending.remove(pod)
            if pending and time.monotonic() > deadline:
                names = ", ".join(p.container.label for p in pending)
                raise AssertionError(f"not ready after {timeout_s:.0f} s: {names}\n{pending[0].output()}")
            time.sleep(0.5)
