"""`canaryflow serve`: the inference server (multi-version embedding server with canary routing).

Either a routing file (the GitOps-rendered ConfigMap, reloaded on change) or model URIs on the command
line; with URIs the first version gets all traffic unless `--weights` splits it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from canaryflow.kernel.contracts.routing import RoutedVersion, RoutingConfig
from canaryflow.kernel.errors import first_error

_REGISTRY_VERSION = re.compile(r"^models:/[^/@]+/([1-9][0-9]*)$")


def _fail(message: str) -> None:
    typer.echo(f"canaryflow serve: {message}", err=True)
    raise typer.Exit(code=2)


def routing_from_uris(name: str, uris: list[str], versions: list[str], weights: list[int]) -> RoutingConfig:
    """Routing for a start without a routing file; versions come from `models:/name/N` or are numbered."""
    if versions and len(versions) != len(uris):
        raise ValueError(f"--version: {len(versions)} given for {len(uris)} --model-uri")
    if weights and len(weights) != len(uris):
        raise ValueError(f"--weights: {len(weights)} given for {len(uris)} --model-uri")
    if not versions:
        for i, uri in enumerate(uris, start=1):
            found = _REGISTRY_VERSION.match(uri)
            versions.append(found.group(1) if found else str(i))
    weights = weights or [100] + [0] * (len(uris) - 1)
    roles = ["baseline", "canary"] if len(uris) == 2 else ["stable"] * len(uris)
    routed = [
        RoutedVersion(version=v, uri=u, weight=w, role=r)
        for v, u, w, r in zip(versions, uris, weights, roles, strict=True)
    ]
    return RoutingConfig(model=name, versions=routed)


def _reason(exc: ValidationError) -> str:
    return first_error(exc, None)


def serve(
    model_uri: Annotated[
        list[str] | None,
        typer.Option("--model-uri", help="models:/name/N, runs:/..., or a local path; repeat for versions"),
    ] = None,
    model_name: Annotated[str | None, typer.Option(help="registered model name (metrics label)")] = None,
    version: Annotated[
        list[str] | None, typer.Option("--version", help="version number of each --model-uri, in order")
    ] = None,
    weights: Annotated[
        list[int] | None, typer.Option("--weights", help="traffic % of each --model-uri")
    ] = None,
    routing_file: Annotated[
        Path | None, typer.Option(help="routing YAML (RoutingConfig); reloaded when it changes")
    ] = None,
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    workers: Annotated[int | None, typer.Option(help="server processes sharing the port")] = None,
    engine: Annotated[
        bool | None,
        typer.Option(
            "--engine/--replicas",
            help="workers>1: one engine process holds the models, or whole replicas (default)",
        ),
    ] = None,
    cuda_graphs: Annotated[
        bool | None,
        typer.Option("--cuda-graphs/--no-cuda-graphs", help="GPU: replay captured forward passes"),
    ] = None,
    graph_capture: Annotated[
        str | None, typer.Option(help="lazy (common shapes before ready, the rest on first use) or all")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N")] = None,
    dtype: Annotated[
        str | None, typer.Option(help="auto (fp16 on GPU, fp32 on CPU), float16, bfloat16")
    ] = None,
    max_batch_size: Annotated[int | None, typer.Option(help="texts per dispatched batch")] = None,
    max_wait_ms: Annotated[float | None, typer.Option(help="longest wait to fill a batch")] = None,
    gpu_memory_budget_mb: Annotated[
        float | None, typer.Option(help="device memory for weights + CUDA-graph pools; LRU beyond it to host")
    ] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI for models:/ URIs")] = None,
    max_body_bytes: Annotated[int | None, typer.Option(help="request body limit (413 beyond)")] = None,
    max_request_tokens: Annotated[int | None, typer.Option(help="tokens in one request (413 beyond)")] = None,
    max_queue_tokens: Annotated[
        int | None, typer.Option(help="tokens waiting per version (429 + Retry-After beyond)")
    ] = None,
    max_queue_wait_ms: Annotated[
        float | None, typer.Option(help="expected wait for the work ahead (429 + Retry-After beyond)")
    ] = None,
    request_timeout_s: Annotated[float | None, typer.Option(help="request deadline (504 beyond)")] = None,
    token_ids_encoding: Annotated[
        str | None, typer.Option(help="token-id inputs counted with this tiktoken encoding (cl100k_base)")
    ] = None,
    prediction_log_rate: Annotated[
        float | None, typer.Option(help="fraction of requests written to the prediction log; 0 = off")
    ] = None,
    prediction_log_dir: Annotated[
        Path | None, typer.Option(help="folder of the prediction log's files (one folder a model)")
    ] = None,
    prediction_log_format: Annotated[
        str | None, typer.Option(help="prediction-log files: jsonl (default) or parquet (whole files)")
    ] = None,
    prediction_log_text: Annotated[
        bool | None,
        typer.Option("--prediction-log-text/--no-prediction-log-text", help="also log the raw input text"),
    ] = None,
) -> None:
    """Run the inference server until interrupted."""
    from inference.runner import run
    from inference.server import read_routing_file
    from inference.server_settings import InferenceSettings

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "workers": workers,
            "engine": engine,
            "cuda_graphs": cuda_graphs,
            "graph_capture": graph_capture,
            "device": device,
            "dtype": dtype,
            "max_batch_size": max_batch_size,
            "max_wait_ms": max_wait_ms,
            "gpu_memory_budget_mb": gpu_memory_budget_mb,
            "tracking_uri": tracking_uri,
            "routing_file": routing_file,
            "max_body_bytes": max_body_bytes,
            "max_request_tokens": max_request_tokens,
            "max_queue_tokens": max_queue_tokens,
            "max_queue_wait_ms": max_queue_wait_ms,
            "request_timeout_s": request_timeout_s,
            "token_ids_encoding": token_ids_encoding,
            "prediction_log_rate": prediction_log_rate,
            "prediction_log_dir": prediction_log_dir,
            "prediction_log_text": prediction_log_text,
            "prediction_log_format": prediction_log_format,
        }.items()
        if v is not None
    }
    try:
        settings = InferenceSettings(**overrides)
    except ValidationError as exc:
        _fail(_reason(exc))
    routing: RoutingConfig | None = None
    if model_uri and settings.routing_file:
        _fail("--model-uri: give either model URIs or --routing-file, not both")
    if model_uri:
        if not model_name:
            _fail("--model-name: required with --model-uri")
            return
        try:
            routing = routing_from_uris(model_name, list(model_uri), list(version or []), list(weights or []))
        except ValidationError as exc:
            _fail(_reason(exc))
        except ValueError as exc:
            _fail(str(exc))
    elif settings.routing_file:
        try:
            read_routing_file(settings.routing_file)
        except ValueError as exc:
            _fail(str(exc))
    else:
        _fail("--model-uri: give at least one model URI, or --routing-file")
    run(settings, routing)
