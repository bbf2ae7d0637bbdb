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

A third-party server's pod adds three more, again only what the image and the pod provide:

- an image's programs come from that image's environment (`ImageEnvironment`: MLServer's own
  virtual environment for `seldonio/mlserver`, canaryflow's for MLflow's downloader image, whose
  `mlflow` client is the same), with the few settings that differ on this machine, each said why;
- an `emptyDir` volume is an empty folder, and a path under its `mountPath`, in an argument or an
  environment value, points into it;
- an environment value that names a declared containerPort, or any `*_PORT` variable's number,
  gets the local port too (every pod has its own network: two MLServers both listen on 8081).

Init containers run to completion, in order, before the pod's containers start, as the kubelet runs
them (`start_pod`).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from canaryflow.app.local.process import ManagedProcess

CANARYFLOW = Path(sys.executable).with_name("canaryflow")
# What the image's environment provides besides the container's `env` (a Python and its packages).
_IMAGE_ENV = ("PATH", "HOME", "PYTHONPATH", "LANG", "TMPDIR", "VIRTUAL_ENV")


@dataclass(frozen=True)
class ImageEnvironment:
    """Where an image's programs are on this machine, and the settings that must differ here."""

    bin_dir: Path
    env: dict[str, str] = field(default_factory=dict)


def image_repository(image: str) -> str:
    """`seldonio/mlserver:1.7.1` -> `seldonio/mlserver` (a digest too is dropped)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


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
    readiness: Probe | None
    liveness: Probe | None
    files: dict[Path, str] = field(default_factory=dict)
    folders: list[Path] = field(default_factory=list)
    init: bool = False

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


def _env(
    container: dict[str, Any], mounts: dict[str, Path], ports: set[int], local: Callable[[int], int]
) -> dict[str, str]:
    env = {}
    for var in container.get("env", []):
        if "value" not in var:  # valueFrom (secrets, field refs) has no local meaning
            raise AssertionError(f"env {var['name']}: only literal values can run locally")
        value = _local_arg(str(var["value"]), mounts)
        if value.isdigit() and (int(value) in ports or var["name"].endswith("_PORT")):
            value = str(local(int(value)))
        env[var["name"]] = value
    return env


def _argv(
    container: dict[str, Any], environments: Mapping[str, ImageEnvironment]
) -> tuple[list[str], dict[str, str]]:
    """The command as the image would run it here, and the image's settings for this machine."""
    command = list(container.get("command", []))
    if command[:1] == ["canaryflow"]:
        command[0] = str(CANARYFLOW)
        return command, {}
    image = environments.get(image_repository(str(container.get("image", ""))))
    if image is None:
        return command, {}
    if command and not os.path.isabs(command[0]):
        command[0] = str(image.bin_dir / command[0])
    return command, dict(image.env)


def containers(
    objects: list[dict[str, Any]],
    scratch: Path,
    port_map: Callable[[int], int] | None = None,
    environments: Mapping[str, ImageEnvironment] | None = None,
) -> list[Container]:
    """Every container of every pod spec in a built overlay, init containers first (`init`), its
    volumes written under `scratch`."""
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    found = []
    for name, pod in _pod_specs(objects):
        forwarded: dict[int, int] = {}

        def local(port: int, forwarded: dict[int, int] = forwarded) -> int:
            if port_map is None:
                return port
            return forwarded.setdefault(port, port_map(port))

        volumes, files, folders = _volumes(name, pod, configmaps, scratch)
        specs = [(c, True) for c in pod.get("initContainers", [])] + [(c, False) for c in pod["containers"]]
        for container, init in specs:
            found.append(
                _container(name, container, init, volumes, files, folders, local, environments or {})
            )
    return found


def _volumes(
    name: str, pod: dict[str, Any], configmaps: dict[str, dict[str, Any]], scratch: Path
) -> tuple[dict[str, Path], dict[Path, str], list[Path]]:
    """Each volume's local folder; the files a configMap volume holds; the emptyDir folders."""
    volumes: dict[str, Path] = {}
    files: dict[Path, str] = {}
    folders: list[Path] = []
    for volume in pod.get("volumes", []):
        folder = scratch / name / volume["name"]
        volumes[volume["name"]] = folder
        if "emptyDir" in volume:
            folders.append(folder)
            continue
        if "configMap" not in volume:
            raise AssertionError(f"{name}: volume {volume['name']} is neither a configMap nor an emptyDir")
        source = configmaps.get(volume["configMap"]["name"])
        if source is None:
            raise AssertionError(f"{name}: ConfigMap {volume['configMap']['name']} is not in the build")
        files |= {folder / key: value for key, value in source.get("data", {}).items()}
    return volumes, files, folders


def _container(
    deployment: str,
    container: dict[str, Any],
    init: bool,
    volumes: dict[str, Path],
    files: dict[Path, str],
    folders: list[Path],
    local: Callable[[int], int],
    environments: Mapping[str, ImageEnvironment],
) -> Container:
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}
    command, image_env = _argv(container, environments)
    args = [_local_arg(arg, mounts) for arg in container.get("args", [])]
    declared = {
        p.get("name", str(p["containerPort"])): int(p["containerPort"]) for p in container.get("ports", [])
    }
    readiness = None if init else _probe(container, "readinessProbe", declared, local)
    liveness = _probe(container, "livenessProbe", declared, local) if "livenessProbe" in container else None
    return Container(
        deployment=deployment,
        name=container["name"],
        argv=[*command, *_forward(_loopback(args), set(declared.values()), local)],
        env={**_env(container, mounts, set(declared.values()), local), **image_env},
        ports={key: local(port) for key, port in declared.items()},
        readiness=readiness,
        liveness=liveness,
        files=files,
        folders=folders,
        init=init,
    )


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
    for folder in container.folders:
        folder.mkdir(parents=True, exist_ok=True)
    for path, text in container.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def image_env() -> dict[str, str]:
    """What every image's environment provides besides the container's `env`."""
    return {k: os.environ[k] for k in _IMAGE_ENV if k in os.environ}


def start_pod(pod: list[Container], logs: Path, timeout_s: float) -> list[ManagedProcess]:
    """One pod as the kubelet starts it: its init containers run to completion in order (a failure
    fails the pod with that container's output), then its containers start and are polled until their
    readiness probes answer 200."""
    base = image_env()
    for container in pod:
        write_files(container)
    for container in (c for c in pod if c.init):
        log = logs / f"{container.deployment}-{container.name}.log"
        with log.open("wb") as sink:
            done = subprocess.run(
                container.argv, env={**base, **container.env}, stdout=sink, stderr=subprocess.STDOUT,
                timeout=timeout_s, check=False,
            )  # fmt: skip
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"init container {container.label} exited with {done.returncode}:\n{tail}")
    started: list[ManagedProcess] = []
    try:
        for container in (c for c in pod if not c.init):
            log = logs / f"{container.deployment}-{container.name}.log"
            process = ManagedProcess(container.label, container.argv, log, env={**base, **container.env})
            started.append(process)
            probe = container.readiness
            if probe is not None:
                url = f"http://127.0.0.1:{probe.port}{probe.path}"
                process.wait_until(functools.partial(_answers, url), timeout_s, "ready")
    except BaseException:
        for process in started:
            process.stop()
        raise
    return started


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


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
    base = image_env()
    started: list[Running] = []
    try:
        for container in (c for c in found if not c.init):
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
                readiness = pod.container.readiness
                assert readiness is not None, f"{pod.container.label}: an init container is never ready"
                code = pod.process.poll()
                if code is not None:
                    raise AssertionError(f"{pod.container.label} exited with {code}:\n{pod.output()}")
                try:
                    ready = client.get(pod.url(readiness)).status_code == 200
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
