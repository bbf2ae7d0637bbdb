"""Profile `tei`: Hugging Face Text Embeddings Inference (`text-embeddings-router`).

`--model-id <dir>` (a local directory: TEI loads it without the Hub), the API's model name set to the
canaryflow model (`--served-model-name`), `/health` for both probes and `/metrics` on the serving
port (TEI also serves it there, beside its separate `--prometheus-port`). Flags are checked against
TEI's clap definitions (tests/gitops/servers/tei.flags). Assumes the artifacts are a Hugging Face
embedding model directory (sentence-transformers layout).
"""

from __future__ import annotations

from typing import ClassVar

from canaryflow.kernel.serving import ServingConfig
from gitops.profiles.base import Server, VersionRef, with_extra_args
from gitops.settings import RenderOptions

IMAGE = "ghcr.io/huggingface/text-embeddings-inference:1.8"


class TeiProfile:
    name: ClassVar[str] = "tei"

    def server(
        self, ref: VersionRef, serving: ServingConfig, options: RenderOptions, port: int, kserve: bool
    ) -> Server:
        values = ref.parameters(port, kserve)
        args = ["--model-id", values["model_dir"], "--served-model-name", ref.model]
        args += ["--hostname", "0.0.0.0", "--port", str(port)]
        return Server(
            image=serving.image or IMAGE,
            command=["text-embeddings-router"],
            args=with_extra_args(args, serving, values),
            env=[("HF_HUB_OFFLINE", "1")],
            port=port,
            readiness_path="/health",
            liveness_path="/health",
        )
