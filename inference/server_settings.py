"""Settings of the inference server (env prefix CANARYFLOW_INFERENCE_, YAML section `inference`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from canaryflow.kernel.component_settings import ComponentSettings
from canaryflow.kernel.contracts.drift import PredictionLogFormat


class InferenceSettings(ComponentSettings):
    section: ClassVar[str] = "inference"

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="server processes sharing the port")
    engine: bool | None = Field(
        default=None,
        description="workers>1: one engine process holds the models (one copy of the weights), or "
        "whole replicas (a copy each); None: the engine on a GPU, replicas on a CPU",
    )
    device: str = Field(default="auto", description="auto (cuda when present), cpu, cuda, cuda:N")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    cuda_graphs: bool = Field(default=True, description="GPU: replay captured forward passes per shape")
    graph_capture: Literal["lazy", "all"] = Field(
        default="lazy", description="lazy: common shapes before ready, others on first use; all: every shape"
    )
    tracking_uri: str | None = Field(default=None, description="MLflow tracking URI for models:/ URIs")
    routing_file: Path | None = None
    routing_poll_s: float = Field(default=0.5, gt=0)
    max_batch_size: int | None = Field(
        default=None, ge=1, le=4096, description="texts per batch; 1,024 in a GPU engine, else 256"
    )
    max_wait_ms: float = Field(default=1.0, ge=0, le=1000)
    concurrent_batches: int | None = Field(
        default=None, ge=1, le=16, description="batches in flight per version; 1 on CPU, 2 per GPU stream"
    )
    gpu_streams: int | None = Field(
        default=None, ge=1, le=8,
        description="GPU: passes the device runs at once per version (CUDA streams, each with its own "
        "graphs); 2 in the engine, 1 per replica",
    )  # fmt: skip
    # Admission control (docs/inference.md, "Limits"): each refusal names the setting it hit.
    max_body_bytes: int = Field(default=8 << 20, ge=1024, description="request body; 413 beyond")
    max_inputs: int = Field(default=2048, ge=1, description="inputs in one request; 413 beyond")
    max_input_chars: int = Field(default=20000, ge=1, description="characters in one text; 400 beyond")
    max_request_tokens: int = Field(default=65536, ge=1, description="tokens in one request; 413 beyond")
    max_queue_tokens: int = Field(
        default=65536, ge=1, description="tokens waiting per version; 429 + Retry-After beyond"
    )
    max_queue_wait_ms: float | None = Field(
        default=None,
        gt=0,
        description="expected wait for the work ahead; 429 + Retry-After beyond (None: off)",
    )
    request_timeout_s: float = Field(default=30.0, gt=0, le=3600, description="deadline; 504 beyond")
    truncate: bool = Field(default=True, description="cut texts to the model's length, as encode does")
    token_ids_encoding: str | None = Field(
        default=None,
        description="token-id inputs: None = the model's own ids; a tiktoken encoding (cl100k_base) = "
        "ids counted by the client with it, decoded to text and embedded as text",
    )
    gpu_memory_budget_mb: float | None = Field(default=None, gt=0)
    max_resident_versions: int | None = Field(
        default=None, ge=1, le=4096,
        description="versions on the device at once (the model cache's slots); LRU beyond it to host, "
        "with gpu_memory_budget_mb too: whichever binds first",
    )  # fmt: skip
    retire_grace_s: float = Field(default=2.0, ge=0, description="keep a removed version this long")
    shadow_max_in_flight: int = Field(default=256, ge=1)
    max_connections: int = Field(default=8192, ge=1, description="uvicorn limit_concurrency per worker")
    # Slow and greedy clients (inference.connection_guard): a request's headers, then its body, must
    # arrive within these; one address holds at most this many connections (per worker process).
    header_timeout_s: float = Field(default=10.0, gt=0, le=3600, description="headers within; closed beyond")
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600, description="body within; closed beyond")
    max_malloc_arenas: int = Field(
        default=2,
        ge=0,
        le=64,
        description="glibc malloc arenas per process; 0: glibc's own, 8 per core "
        "(bench/inference_soak.py: RSS comes back after load with 2, stays at its high-water mark without)",
    )
    max_connections_per_client: int = Field(
        default=4096, ge=1, description="open connections from one address; 503 beyond (a gateway is one)"
    )
    prediction_log_rate: float = Field(default=0.0, ge=0, le=1, description="requests sampled; 0 = off")
    prediction_log_dir: Path = Field(default=Path("predictions"), description="a folder a model")
    prediction_log_format: PredictionLogFormat = Field(
        default="jsonl", description="jsonl: readable line by line at once; parquet: smaller, whole files"
    )
    prediction_log_text: bool = Field(default=False, description="also keep the raw input text")
    prediction_log_queue: int = Field(default=10_000, ge=1, description="samples waiting; more are dropped")
    prediction_log_rotate_mb: float = Field(default=64.0, gt=0)
    prediction_log_rotate_s: float = Field(default=3600.0, gt=0)
    prediction_log_keep_files: int = Field(default=240, ge=1, description="per model and process")
    prediction_log_summary_s: float = Field(
        default=3600.0, ge=0, description="window of the MLflow summary metrics; 0 = none"
    )

    def resolved_concurrent_batches(self) -> int:
        """On a GPU a second batch is padded and copied while one runs; on a CPU the forward pass
        already uses every core, and a second one only makes both slower (and the latency of each
        admitted request longer)."""
        if self.concurrent_batches is not None:
            return self.concurrent_batches
        return 2 * self.resolved_gpu_streams() if self.resolved_device().startswith("cuda") else 1

    def resolved_max_batch_size(self) -> int:
        """The engine process batches what 8 fronts send through one interpreter, and its cost per
        batch (a turn of the event loop, a worker thread's wake-up, the device lock, each taken
        while the fronts' frames compete for the same GIL) is what caps it at many-text requests:
        1,024-text batches served 94-95% of 8 replicas' 32-sentence throughput where 256-text ones
        served 46-56%, on two H100 hosts (bench/inference.md, "GPU: one H100, runs 12 and 13").
        Long texts are bounded by tokens instead: a batch holds at most one graphed pass
        (`DynamicBatcher._take_batch`). A replica or a CPU server keeps batches of 256: it batches
        only its own front's requests."""
        if self.max_batch_size is not None:
            return self.max_batch_size
        return 1024 if self.resolved_engine() and self._gpu_mounted() else 256

    def resolved_gpu_streams(self) -> int:
        """The engine process is the GPU's only user: a second stream overlaps one pass's gaps (its
        copies, its small kernels) with another's. A replica shares the GPU with the others already."""
        if self.gpu_streams is not None:
            return self.gpu_streams
        return 2 if self.resolved_engine() else 1

    def resolved_engine(self) -> bool:
        """On a GPU one engine process serves what 8 replicas serve from one copy of the weights
        (bench/inference.md, "One copy of the weights"), so it is the default there. On a CPU every
        replica computes on its own cores, and replicas stay the default.

        Decided in the parent before any worker starts, without importing torch (seconds of
        start-up)."""
        if self.engine is not None:
            return self.engine
        if self.workers < 2:
            return False
        return self._gpu_mounted()

    def _gpu_mounted(self) -> bool:
        """Whether the server runs on a GPU, known without importing torch: `device: auto` finds
        the NVIDIA control device exactly where a GPU is mounted."""
        if self.device == "auto":
            return Path("/dev/nvidiactl").exists()
        return self.device.startswith("cuda")

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
