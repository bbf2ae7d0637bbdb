"""Profile `triton`: NVIDIA Triton Inference Server on the version's model repository.

`tritonserver --model-repository=<dir>` with the HTTP port set, `/v2/health/ready` and
`/v2/health/live` (the KServe V2 protocol Triton speaks), and metrics on Triton's own metrics port
(8002, `/metrics`). Flags are checked against Triton's parser (tests/gitops/servers/triton.flags).
Assumes the registered version's artifacts are a Triton model repository (one folder per model, each
with its `config.pbtxt` and numbered version folders).
"""

from __future__ import annotations

from typing import ClassVar

from canaryflow.kernel.serving import ServingConfig
from gitops.profiles.base import Server, VersionRef, with_extra_args
from gitops.settings import RenderOptions

IMAGE = "nvcr.io/nvidia/tritonserver:25.01-py3"
METRICS_PORT = 8002  # Triton's default `--metrics-port`


class TritonProfile:
    name: ClassVar[str] = "triton"

    def server(
        self, ref: VersionRef, serving: ServingConfig, options: RenderOptions, port: int, kserve: bool
    ) -> Server:
        values = ref.parameters(port, kserve)
        args = [
            f"--model-repository={values['model_dir']}",
            f"--http-port={port}",
            f"--metrics-port={METRICS_PORT}",
        ]
        return Server(
            image=serving.image or IMAGE,
            command=["tritonserver"],
            args=with_extra_args(args, serving, values),
            env=[],
            port=port,
            readiness_path="/v2/health/ready",
            liveness_path="/v2/health/live",
            metrics_port=METRICS_PORT,
        )
