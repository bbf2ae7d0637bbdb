"""Profile `mlserver`: Seldon MLServer with its MLflow runtime, the server KServe's V2 MLflow runtime
runs.

`mlserver start <dir>` with the model described by MLServer's environment settings (`MLSERVER_MODEL_*`,
read when the folder has no model-settings.json, as an MLflow model folder has not), the MLflow
runtime (`mlserver_mlflow.MLflowRuntime`, in the `seldonio/mlserver` image), `/v2/health/ready` and
`/v2/health/live`, and metrics on MLServer's metrics port (8082, `/metrics`). Settings names are
checked against MLServer's own (tests/gitops/servers/mlserver.flags). Assumes the artifacts are an
MLflow model (an `MLmodel` file); another MLServer runtime is a `custom` server.
"""

from __future__ import annotations

from typing import ClassVar

from canaryflow.kernel.contracts.serving_config import ServingConfig
from gitops.gitops_settings import RenderOptions
from gitops.profiles.base import Server, VersionRef

IMAGE = "seldonio/mlserver:1.7.1"
METRICS_PORT = 8082  # MLServer's default `metrics_port`
# MLServer's default `grpc_port`, named so that no port the server opens is implicit (a pod network
# stand-in, or a sidecar, can then tell all of them).
GRPC_PORT = 8081
RUNTIME = "mlserver_mlflow.MLflowRuntime"


class MlserverProfile:
    name: ClassVar[str] = "mlserver"

    def server(
        self, ref: VersionRef, serving: ServingConfig, options: RenderOptions, port: int, kserve: bool
    ) -> Server:
        model_dir = ref.model_dir(kserve)
        return Server(
            image=serving.image or IMAGE,
            command=["mlserver", "start", model_dir],
            args=[],
            env=[
                ("MLSERVER_HTTP_PORT", str(port)),
                ("MLSERVER_METRICS_PORT", str(METRICS_PORT)),
                ("MLSERVER_GRPC_PORT", str(GRPC_PORT)),
                ("MLSERVER_MODEL_NAME", ref.model),
                ("MLSERVER_MODEL_VERSION", ref.version),
                ("MLSERVER_MODEL_IMPLEMENTATION", RUNTIME),
                ("MLSERVER_MODEL_URI", model_dir),
            ],
            port=port,
            readiness_path="/v2/health/ready",
            liveness_path="/v2/health/live",
            metrics_port=METRICS_PORT,
        )
