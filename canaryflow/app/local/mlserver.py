"""Seldon MLServer with its MLflow runtime, run for one model version as its own image would run it.

MLServer is a server none of canaryflow's code is in: it installs from PyPI into its own environment
(MLServer 1.7.1 needs fastapi < 0.116, which canaryflow's own environment does not satisfy), as its
container image would hold it, and canaryflow only starts it with a model folder, as a pod's init
container and entry point would. This is what KServe's V2 MLflow runtime runs.

A version's artifacts are fetched from the registry the way the init container does (MLflow's
artifact download of the version's URI); `model-settings.json` names the model and version, so the
server's responses say which version answered.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from canaryflow.app.local.process import ManagedProcess, free_port, http_ok
from canaryflow.kernel.contracts.routing import RoutedVersion

# What its image would hold; `make mlserver-env` installs exactly this file into `.venv-mlserver/`.
REQUIREMENTS_FILE = Path(__file__).with_name("mlserver-requirements.txt")
DEFAULT_ENV = Path(".venv-mlserver")
INSTALL_HINT = f"make mlserver-env (pip install -r {REQUIREMENTS_FILE.name} into {DEFAULT_ENV}/)"


class MLServerNotInstalled(RuntimeError):
    pass


@dataclass
class VersionServer:
    """One version's running server: where the proxy sends its requests and Prometheus scrapes it."""

    version: str
    process: ManagedProcess
    port: int
    metrics_port: int

    @property
    def metrics_target(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    def stop(self) -> None:
        self.process.stop()


def mlserver_executable(env: Path) -> Path:
    exe = env / "bin" / "mlserver"
    if not exe.exists():
        raise MLServerNotInstalled(f"MLServer is not installed in {env}; {INSTALL_HINT}")
    return exe


def fetch_artifacts(uri: str, dest: Path, tracking_uri: str | None) -> Path:
    """The version's model folder, downloaded as the init container does (a local path is used as is)."""
    local = Path(uri)
    if local.is_dir():
        return local
    import mlflow.artifacts

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    return Path(
        mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest), tracking_uri=tracking_uri)
    )


class MLServerLauncher:
    """Starts one MLServer process per version, each in its own folder with its own ports."""

    health_path = "/v2/health/ready"

    def __init__(
        self, env: Path, workdir: Path, tracking_uri: str | None = None, timeout_s: float = 120.0
    ) -> None:
        self.executable = mlserver_executable(env)
        self.workdir = workdir
        self.tracking_uri = tracking_uri
        self.timeout_s = timeout_s

    def start(self, model: str, routed: RoutedVersion) -> VersionServer:
        folder = self.workdir / f"{model}-v{routed.version}"
        artifacts = fetch_artifacts(routed.uri, folder / "artifacts", self.tracking_uri)
        port, grpc_port, metrics_port = free_port(), free_port(), free_port()
        (folder / "settings.json").write_text(
            json.dumps({"http_port": port, "grpc_port": grpc_port, "metrics_port": metrics_port,
                        "parallel_workers": 0, "host": "127.0.0.1"})
        )  # fmt: skip
        (folder / "model-settings.json").write_text(
            json.dumps({
                "name": model,
                "implementation": "mlserver_mlflow.MLflowRuntime",
                "version": routed.version,
                "parameters": {"uri": str(artifacts.resolve()), "version": routed.version},
            })
        )  # fmt: skip
        process = ManagedProcess(
            f"mlserver {model} v{routed.version}",
            [str(self.executable), "start", str(folder)],
            folder / "mlserver.log",
            cwd=folder,
        )
        ready = f"http://127.0.0.1:{port}/v2/models/{model}/ready"
        process.wait_until(lambda: http_ok(ready), self.timeout_s, "ready")
        return VersionServer(version=routed.version, process=process, port=port, metrics_port=metrics_port)
