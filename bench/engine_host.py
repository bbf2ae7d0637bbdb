"""The engine process's host cost per sentence, over a device that costs only its time.

On a GPU the engine (one process holding the models, fed by N HTTP fronts) was slower than its CPU
use says it should be (bench/inference.md, "GPU: one H100, runs 12 and 13"). This runs the real
engine process (`inference.engine_process.run_engine`, the real batcher and socket protocol) over
a stand-in model whose pass sleeps `len(batch) / rate` seconds with the interpreter released, as a
GPU pass waits, and returns fixed rows. Driver processes of `EngineClient`s (a front's handle,
without HTTP) keep `--conns` requests of `--texts` token-id texts each in flight. It prints the
sentences/s served and the engine process's CPU per sentence, read from /proc: what the engine's
own Python costs, with no device and no HTTP in it.

    .venv/bin/python bench/engine_host.py --batch 256 --rate 400000 --conns 64   # ~15 s
    .venv/bin/python bench/engine_host.py --batch 1024 --rate 400000 --conns 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKENS_PER_TEXT = 24


def _engine(socket_path: str, batch: int, in_flight: int, rate: float) -> None:
    """The child: the real engine over a pass that costs `len(batch) / rate` seconds of waiting."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np

    from canaryflow.adapters.model_assets import minilm_path
    from canaryflow.kernel.contracts.routing import RoutingConfig
    from inference.engine_process import run_engine
    from inference.models.base import TokenizedBatch
    from inference.models.loader import load_model
    from inference.server import ModelServer
    from inference.server_settings import InferenceSettings

    real = load_model(str(minilm_path()), "cpu", "float32", None, False)

    class TimedPass:
        """The real model's attributes and tokenizer; a pass waits its time, rows are ones."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def embed(self, texts: TokenizedBatch) -> np.ndarray:
            if rate:
                time.sleep(len(texts) / rate)
            return np.ones((len(texts), real.dimension), dtype=np.float32)

        def warm_up(self) -> None:
            pass

    model = TimedPass()
    settings = InferenceSettings(
        device="cpu", max_batch_size=batch, concurrent_batches=in_flight, max_queue_tokens=1 << 24
    )
    routing = RoutingConfig.model_validate(
        {"model": "minilm", "versions": [{"version": "1", "uri": "timed", "weight": 100}]}
    )
    sys.setswitchinterval(0.0005)  # as the engine runs on a GPU (inference/runner.py)
    try:  # and on uvloop where it is installed, as there
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run_engine(ModelServer(settings, loader=lambda _: model), routing, socket_path))


def _driver(socket_path: str, conns: int, texts: int, seconds: float, batch: int, out: Any) -> None:
    """The child: `conns` requests in flight through one `EngineClient`; counts the sentences."""
    import numpy as np

    from inference.engine_process import EngineClient
    from inference.models.base import TokenizedBatch

    async def drive() -> None:
        client = EngineClient(socket_path, max_group_texts=batch)
        await client.start()
        while "1" not in client.loaded:
            await asyncio.sleep(0.05)
        ids = np.full(TOKENS_PER_TEXT * texts, 1000, dtype=np.int32)
        lengths = np.full(texts, TOKENS_PER_TEXT, dtype=np.int32)
        request = TokenizedBatch(ids, lengths, None, np.zeros(texts, dtype=bool))
        stop = time.perf_counter() + seconds
        counted = [False]
        served = 0

        async def connection() -> None:
            nonlocal served
            while time.perf_counter() < stop:
                result = await client.submit("1", request)
                result.embeddings.sum()  # the front reads its rows
                if counted[0]:
                    served += texts

        tasks = [asyncio.create_task(connection()) for _ in range(conns)]
        await asyncio.sleep(1.0)  # warm-up, not counted
        counted[0] = True
        started = time.perf_counter()
        await asyncio.gather(*tasks)
        out.put((served, time.perf_counter() - started))
        await client.close()

    asyncio.run(drive())


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--batch", type=int, default=256, help="the engine's max_batch_size")
    parser.add_argument(
        "--in-flight", type=int, default=4, help="batches in flight (the engine's 4 on a GPU)"
    )
    parser.add_argument("--rate", type=float, default=400000.0, help="texts/s a pass runs at; 0: free")
    parser.add_argument("--drivers", type=int, default=1, help="driver processes (fronts)")
    parser.add_argument("--conns", type=int, default=64, help="requests in flight per driver")
    parser.add_argument("--texts", type=int, default=32, help="texts per request")
    parser.add_argument("--measure-s", type=float, default=6.0)
    parser.add_argument("--out", default=None, help="write the row as JSON here too")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    socket_path = os.path.join(tempfile.mkdtemp(prefix="engine-host-"), "engine.sock")
    engine = ctx.Process(target=_engine, args=(socket_path, args.batch, args.in_flight, args.rate))
    engine.start()
    results = ctx.Queue()
    driving = (socket_path, args.conns, args.texts, args.measure_s + 1, args.batch, results)
    drivers = [ctx.Process(target=_driver, args=driving) for _ in range(args.drivers)]
    try:
        for driver in drivers:
            driver.start()
        time.sleep(2.5)  # the engine loaded, the drivers connected and past their warm-up
        cpu0, t0 = _cpu_seconds(engine.pid or 0), time.perf_counter()
        served = [results.get(timeout=args.measure_s + 120) for _ in drivers]
        wall = time.perf_counter() - t0
        cores = (_cpu_seconds(engine.pid or 0) - cpu0) / wall
        for driver in drivers:
            driver.join(timeout=30)
    finally:
        engine.terminate()
        engine.join(timeout=30)
    sentences_per_s = sum(count for count, _ in served) / max(seconds for _, seconds in served)
    row = {
        "batch": args.batch, "in_flight": args.in_flight, "rate": args.rate, "texts": args.texts,
        "drivers": args.drivers, "conns": args.conns, "sentences_per_s": round(sentences_per_s),
        "engine_cores": round(cores, 3), "engine_us_per_sentence": round(1e6 * cores / sentences_per_s, 2),
    }  # fmt: skip
    print(json.dumps(row))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
