"""`canaryflow serve`: the inference server (multi-version embedding server with canary routing).

Either a routing file (the GitOps-rendered ConfigMap, reloaded on change) or model URIs on the command
line; with URIs the first version gets all traffic unless `--weights` splits it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError

from canaryflow.app.commands.cli_shared import ListenHost, ListenPort, exit_with_error
from canaryflow.kernel.contracts.routing import RoutedVersion, RoutingConfig
from canaryflow.kernel.errors import first_error

if TYPE_CHECKING:
    from inference.server_settings import InferenceSettings

_REGISTRY_VERSION = re.compile(r"^models:/[^/@]+/([1-9][0-9]*)$")


def _fail(message: str) -> NoReturn:
    exit_with_error("serve", message)


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


# `canaryflow serve`, read top-down: `serve_options` declares the options (names, types, defaults, help;
# `serve` takes its signature), `RoutingOptions` are the four that name model URIs, every other option
# is the `InferenceSettings` field of the same name (`_inference_settings`), and `_routing` picks the
# URIs or the routing file.
def serve_options(
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
    host: ListenHost = None,
    port: ListenPort = None,
    workers: Annotated[int | None, typer.Option(help="server processes sharing the port")] = None,
    engine: Annotated[
        bool | None,
        typer.Option(
            "--engine/--replicas",
            help="workers>1: one engine process holds the models (default on a GPU), or whole replicas "
            "(default on a CPU)",
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
    max_resident_versions: Annotated[
        int | None,
        typer.Option(
            help="versions on the device at once; LRU beyond it to host (with a budget: first binds)"
        ),
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


@dataclass(frozen=True)
class RoutingOptions:
    """Where the served versions come from when no routing file does: model URIs on the command line."""

    model_uri: list[str] | None
    model_name: str | None
    version: list[str] | None
    weights: list[int] | None


_ROUTING = [field.name for field in fields(RoutingOptions)]


@functools.wraps(serve_options)
def serve(**options: Any) -> None:
    from inference.runner import run

    uris = RoutingOptions(**{name: options.pop(name) for name in _ROUTING})
    settings = _inference_settings(options)
    run(settings, _routing(uris, settings))


def _inference_settings(options: dict[str, Any]) -> InferenceSettings:
    """The inference settings, each option given on the command line overriding the environment's."""
    from inference.server_settings import InferenceSettings

    try:
        return InferenceSettings(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        _fail(_reason(exc))


def _routing(uris: RoutingOptions, settings: InferenceSettings) -> RoutingConfig | None:
    """The routing from model URIs, or None when a routing file (checked here) gives it."""
    from inference.server import read_routing_file

    if uris.model_uri and settings.routing_file:
        _fail("--model-uri: give either model URIs or --routing-file, not both")
    if uris.model_uri:
        if not uris.model_name:
            _fail("--model-name: required with --model-uri")
        try:
            return routing_from_uris(
                uris.model_name, list(uris.model_uri), list(uris.version or []), list(uris.weights or [])
            )
        except ValidationError as exc:
            _fail(_reason(exc))
        except ValueError as exc:
            _fail(str(exc))
    if not settings.routing_file:
        _fail("--model-uri: give at least one model URI, or --routing-file")
    try:
        read_routing_file(settings.routing_file)
    except ValueError as exc:
        _fail(str(exc))
    return None
