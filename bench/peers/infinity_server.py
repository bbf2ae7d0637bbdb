"""infinity-emb 0.0.78 as the benchmark's peer server: its own FastAPI app, served by uvicorn.

Started by `bench/inference.py --peer infinity` and `bench/encoder_sizes.py --peer infinity` (both
through `started()`, one definition of how the peer runs) on the same model dir as `canaryflow
serve`, after it has stopped, with the settings of the figures issue 17 quotes for it: the torch
engine, batch size 128, fp16 on cuda (fp32 on cpu), no BetterTransformer (that needs optimum < 2,
which is not installed).

infinity-emb 0.0.78 declares transformers <= 5.0, sentence-transformers < 4 and numpy < 2; the
benchmark installs it with `--no-deps` beside transformers 5, sentence-transformers 6 and numpy 2.
One thing breaks there, and this file shims it (the shim is printed with the peer's figures):

- transformers 5 removed `PreTrainedTokenizerBase.batch_encode_plus`, which infinity calls to count
  the tokens of every request (`tokenize_lengths`, for its token-sorted batching). Its arguments
  are those of `__call__`, which returns the same `BatchEncoding` (with `.encodings` on a fast
  tokenizer), so the shim is `batch_encode_plus = __call__`.

The rest of infinity's server path runs unchanged: fastapi 0.141 (the newest that accepts
starlette 1.x without pulling in OpenTelemetry), prometheus-fastapi-instrumentator; posthog is not
installed, so its telemetry is off (it is an optional import; the GPU machine has no network
anyway), and `INFINITY_ANONYMOUS_USAGE_STATS=0` says so explicitly.

    python3 bench/peers/infinity_server.py --model DIR --port 8001 --device cuda
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SHIM = "transformers 5 has no batch_encode_plus: shimmed as PreTrainedTokenizerBase.__call__"
ROUTE = "/embeddings"  # infinity's OpenAI-compatible route (no /v1 prefix by default)
READY = "/health"  # answers 200 once the engine has loaded and warmed up the model
INSTALL = (
    "pip install --no-deps infinity-emb==0.0.78 prometheus-fastapi-instrumentator==8.1.0 "
    "(and fastapi, which .venv has; bench/inference.md)"
)
ROOT = Path(__file__).resolve().parents[2]


def installed() -> bool:
    """Whether infinity_emb can be imported here (it is no dependency of the project)."""
    import importlib.util

    return importlib.util.find_spec("infinity_emb") is not None


def label(device: str, batch_size: int) -> str:
    """What the table says about the peer: version, engine, precision, batch, and the shim."""
    from importlib.metadata import version

    dtype = "fp16" if device.startswith("cuda") else "fp32"
    shim = "; shim: batch_encode_plus = __call__ (transformers 5)" if shim_needed() else ""
    return f"infinity-emb {version('infinity_emb')} (torch engine, {dtype}, batch {batch_size}{shim})"


def shim_needed() -> bool:
    from transformers import PreTrainedTokenizerBase

    return not hasattr(PreTrainedTokenizerBase, "batch_encode_plus")


def command(model: str, port: int, device: str, batch_size: int) -> list[str]:
    """The peer's start command: this file run by the same interpreter as the benchmark."""
    return [
        sys.executable, str(Path(__file__).resolve()), "--model", model, "--port", str(port),
        "--device", device, "--batch-size", str(batch_size),
    ]  # fmt: skip


def model_id(port: int) -> str:
    """The model id as infinity reports it (GET /models), which the requests must name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/models", timeout=10) as r:
        return str(json.loads(r.read())["data"][0]["id"])


@dataclass(frozen=True)
class Running:
    """A started peer: its process, port, seconds from launch to ready, and the model id to name."""

    process: subprocess.Popen[bytes]
    port: int
    ready_s: float
    model: str


@contextmanager
def started(model: str, device: str, batch_size: int, timeout_s: float = 300) -> Iterator[Running]:
    """infinity on `model` for the block's length: launched, ready once `/health` answers three times
    in a row (it answers only after the model's warm-up), stopped when the block ends."""
    from bench.serving import free_port, stop_server, wait_ready

    port = free_port()
    cmd = command(model, port, device, batch_size)
    print("peer:", " ".join(cmd), flush=True)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    process = subprocess.Popen(cmd, cwd=ROOT, env=env)
    try:
        t0 = time.monotonic()
        wait_ready(port, process, timeout_s=timeout_s, path=READY, streak_needed=3)
        running = Running(process, port, time.monotonic() - t0, model_id(port))
        print(f"peer ready in {running.ready_s:.1f}s; model id {running.model!r}", flush=True)
        yield running
    finally:
        stop_server(process)


def apply_shim() -> bool:
    """Give transformers 5 back `batch_encode_plus`; returns whether the shim was needed."""
    from transformers import PreTrainedTokenizerBase

    if not shim_needed():
        return False
    PreTrainedTokenizerBase.batch_encode_plus = PreTrainedTokenizerBase.__call__  # type: ignore[attr-defined]
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="sentence-transformers model dir")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--served-model-name", default="minilm")
    args = parser.parse_args()
    os.environ.setdefault("INFINITY_ANONYMOUS_USAGE_STATS", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if apply_shim():
        print(SHIM, flush=True)

    import uvicorn
    from infinity_emb.args import EngineArgs
    from infinity_emb.infinity_server import create_server
    from infinity_emb.primitives import Device, Dtype, InferenceEngine

    logging.getLogger("infinity_emb").setLevel(logging.WARNING)  # its start-up banner, per-step info

    gpu = args.device.startswith("cuda")
    engine = EngineArgs(
        model_name_or_path=args.model,
        served_model_name=args.served_model_name,
        engine=InferenceEngine.torch,
        device=Device.cuda if gpu else Device.cpu,
        dtype=Dtype.float16 if gpu else Dtype.float32,
        batch_size=args.batch_size,
        bettertransformer=False,
        model_warmup=True,
    )
    app = create_server(engine_args_list=[engine])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", loop="auto", http="auto")


if __name__ == "__main__":
    main()
