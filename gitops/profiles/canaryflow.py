"""Profile `canaryflow`: the project's own embedding server, `canaryflow serve`, in the settings' image.

It loads the pinned registry URI itself (`--model-uri models:/<model>/<N>`, through MLflow at
`tracking_uri`), so nothing is downloaded beside it, and it labels its metrics with model and version.
"""

from __future__ import annotations

from typing import ClassVar

from canaryflow.kernel.serving import ServingConfig
from gitops import resources
from gitops.profiles.base import Server, VersionRef
from gitops.settings import RenderOptions


class CanaryflowProfile:
    name: ClassVar[str] = "canaryflow"

    def server(
        self, ref: VersionRef, serving: ServingConfig, options: RenderOptions, port: int, kserve: bool
    ) -> Server:
        return Server(
            image=options.image,
            command=["canaryflow"],
            args=resources.serve_args(ref.uri, ref.model, port),
            env=[("MLFLOW_TRACKING_URI", options.tracking_uri), ("HF_HUB_OFFLINE", "1")],
            port=port,
            readiness_path="/ready",
            liveness_path="/healthz",
            artifacts="registry",
            start_timeout_s=None,
            multi_version=True,
        )
