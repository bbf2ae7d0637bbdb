"""Profile `custom`: the user's own server, from the policy's `serving.custom` template.

Every `${parameter}` of the command, args and env is filled with the version's values
(`canaryflow.kernel.serving`); the port (also under KServe, which serves the declared containerPort),
probes, metrics endpoint and resources are the template's.
The artifacts are downloaded like every other server's (or fetched by KServe from `storageUri`).
"""

from __future__ import annotations

from typing import ClassVar

from canaryflow.kernel.serving import ServingConfig, expand
from gitops.profiles.base import Server, VersionRef
from gitops.settings import RenderOptions


class CustomProfile:
    name: ClassVar[str] = "custom"

    def server(
        self, ref: VersionRef, serving: ServingConfig, options: RenderOptions, port: int, kserve: bool
    ) -> Server:
        template = serving.custom
        if template is None:  # refused when the policy loads; a ServingConfig built in code may lack it
            raise ValueError("serving.custom: required by profile custom")
        values = ref.parameters(template.port, kserve)  # its own port, whatever the router prefers
        return Server(
            image=template.image,
            command=[expand(part, values) for part in template.command],
            args=[expand(part, values) for part in template.args],
            env=[(name, expand(value, values)) for name, value in sorted(template.env.items())],
            port=template.port,
            readiness_path=template.readiness_path,
            liveness_path=template.liveness_path,
            metrics_path=template.metrics_path,
            metrics_port=template.metrics_port,
            start_timeout_s=template.start_timeout_s,
            resources=template.resources,
        )
