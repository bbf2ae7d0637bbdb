"""Profile `vllm`: vLLM's OpenAI-compatible server on the version's downloaded weights.

`python3 -m vllm.entrypoints.openai.api_server` (the entry point every vLLM image has carried; `vllm
serve` wraps it) with `--model <dir>`, the API's model name set to the canaryflow model
(`--served-model-name`, also the `model_name` label of vLLM's metrics), `/health` for both probes and
`/metrics` on the serving port. The flags are checked against vLLM's own parser
(tests/gitops/servers/vllm.flags). Assumes the registered version's artifacts are a Hugging Face model
directory (config.json, weights, tokenizer).
"""

from __future__ import annotations

from typing import ClassVar

from canaryflow.kernel.serving import ServingConfig
from gitops.profiles.base import Server, VersionRef, with_extra_args
from gitops.settings import RenderOptions

IMAGE = "vllm/vllm-openai:v0.7.3"


class VllmProfile:
    name: ClassVar[str] = "vllm"

    def server(
        self, ref: VersionRef, serving: ServingConfig, options: RenderOptions, port: int, kserve: bool
    ) -> Server:
        values = ref.parameters(port, kserve)
        args = ["--model", values["model_dir"], "--served-model-name", ref.model]
        args += ["--host", "0.0.0.0", "--port", str(port)]
        return Server(
            image=serving.image or IMAGE,
            command=["python3", "-m", "vllm.entrypoints.openai.api_server"],
            args=with_extra_args(args, serving, values),
            env=[("HF_HUB_OFFLINE", "1")],
            port=port,
            readiness_path="/health",
            liveness_path="/health",
        )
