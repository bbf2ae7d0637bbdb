"""A real MLflow tracking server on loopback: SQLite backend (webhooks need SQL), local artifacts."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from canaryflow.app.local.process import ManagedProcess, free_port, http_ok


@dataclass
class MlflowServer:
    process: ManagedProcess
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tracking_uri(self) -> str:
        return self.url

    def stop(self) -> None:
        self.process.stop()


def _mlflow_executable() -> list[str]:
    found = Path(sys.executable).with_name("mlflow")
    if found.exists():
        return [str(found)]
    which = shutil.which("mlflow")
    if which:
        return [which]
    return [sys.executable, "-m", "mlflow"]


def start_mlflow(workdir: Path, port: int | None = None, timeout: float = 120.0) -> MlflowServer:
    """Start `mlflow server` and wait until it answers; webhooks may reach loopback addresses."""
    from cryptography.fernet import Fernet

    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    artifacts = workdir / "artifacts"
    artifacts.mkdir(exist_ok=True)
    env = {
        # Loopback delivery for the controller's webhook; MLflow refuses it by default.
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        # A webhook created just before an event must still fire for it.
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "MLFLOW_WEBHOOK_REQUEST_MAX_RETRIES": "3",
    }
    argv = [
        *_mlflow_executable(),
        "server",
        "--backend-store-uri",
        f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination",
        str(artifacts),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    proc = ManagedProcess("mlflow", argv, workdir / "mlflow.log", env=env, cwd=workdir)
    proc.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), timeout, "answering /health")
    return MlflowServer(process=proc, port=port, workdir=workdir)
