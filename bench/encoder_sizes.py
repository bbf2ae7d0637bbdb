"""Encoders of real sizes at real lengths: the server against the model's own best forward pass.

For each encoder shape (all-MiniLM-L6-v2 itself; BERT-base, ~110M parameters; BERT-large, ~335M)
and each input length (24, 48, 128, 512 tokens with [CLS]/[SEP]), in one run on one machine:

1. the ceiling: the model's own forward pass (the same module chain the server runs: transformer,
   mean pooling, normalisation) replayed from a CUDA graph on pre-tokenized fp16 batches already
   on the device, timed with CUDA events at a few batch sizes, the best kept: no tokenizing, no
   padding, no copies, no HTTP;
2. `canaryflow serve` on the same model folder (default: 8 HTTP fronts and one engine, one copy of
   the weights) driven by wrk with requests of several texts of that length: sentences/s and
   tokens/s, p50/p99, and the share of the ceiling, with what the server did meanwhile (texts per
   batch, replays per batch, padding's share, from its own counters);
3. with `--peer infinity`, right after canaryflow's server for that shape has stopped, infinity-emb
   (bench/peers/infinity_server.py) on the same model folder, at the same lengths and texts per
   request, by the same wrk: its sentences/s, tokens/s, p50/p99 and share of the same ceiling, in
   the same rows (one per server), canaryflow's rows saying their ratio to it;
4. where the server falls short, what says why: `--served-path-s` times the server's own forward
   path in-process (`embed` on pre-tokenized chunks from the engine's threads, no HTTP, fronts or
   batcher), and `--profile DIR` samples every server process with py-spy during each length's
   measured seconds (`bench/profile_summary.py DIR`).

BERT-base and BERT-large are built from their configurations (transformers' BertConfig: hidden
768/1024, 12/24 layers, 12/16 heads, intermediate 3072/4096, 512 positions) with seeded random
weights and saved as a sentence-transformers folder beside MiniLM's tokenizer (the same uncased
BERT vocabulary): throughput depends on the shapes, not on the weights' values. Texts are words
that are single tokens in that vocabulary, so each text is exactly the asked length.

    python3 bench/encoder_sizes.py --minilm .assets/minilm-fp16 --device cuda --out $OUT/sizes.json
    .venv/bin/python bench/encoder_sizes.py --device cpu --shapes minilm --tokens 24 --quick  # smoke run
    .venv/bin/python bench/encoder_sizes.py --device cpu --shapes minilm --tokens 24 --quick --peer infinity
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.encoder_sizes_table import table_lines  # noqa: E402
from bench.loadgen import WORDS, Target  # noqa: E402
from bench.loadgen_wrk import _run as run_wrk  # noqa: E402
from bench.loadgen_wrk import find_wrk, parse_wrk_output  # noqa: E402
from bench.serving import (  # noqa: E402
    free_port,
    gpu_memory_used_mib,
    metric_samples,
    start_profilers,
    stop_server,
    wait_ready,
)
from canaryflow.kernel.contracts import metrics as names  # noqa: E402

SHAPES: dict[str, dict[str, int] | None] = {
    "minilm": None,  # the packaged model's own files
    "bert-base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                  "intermediate_size": 3072},
    "bert-large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                   "intermediate_size": 4096},
}  # fmt: skip
# Texts per request at each length: a request of a few thousand tokens, as an indexing client sends.
TEXTS_PER_REQUEST = {24: 32, 48: 32, 128: 16, 512: 4}


def build_model(shape: str, minilm: Path, dest: Path) -> Path:
    """A sentence-transformers folder of `shape` in fp16 (MiniLM: its own weights), 512 positions."""
    import torch
    from safetensors.torch import save_file

    out = dest / shape
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(minilm, out, ignore=shutil.ignore_patterns("model.safetensors", "README.md"))
    bert = json.loads((minilm / "sentence_bert_config.json").read_text())
    (out / "sentence_bert_config.json").write_text(json.dumps({**bert, "max_seq_length": 512}))
    config = SHAPES[shape]
    if config is None:
        shutil.copy(minilm / "model.safetensors", out / "model.safetensors")
        return out
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    # architectures as a saved BertModel's config has it: infinity-emb reads its first entry
    cfg = BertConfig(vocab_size=30522, max_position_embeddings=512, architectures=["BertModel"])
    for key, value in config.items():
        setattr(cfg, key, value)
    model = BertModel(cfg, add_pooling_layer=False).half()
    cfg.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    pooling = json.loads((minilm / "1_Pooling" / "config.json").read_text())
    pooling["word_embedding_dimension"] = config["hidden_size"]
    (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return out


def make_texts(n: int, tokens: int, seed: int) -> list[str]:
    """`n` texts of `tokens` tokens with [CLS]/[SEP]: words that are one token each."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(SINGLE_TOKEN_WORDS, k=tokens - 2)) for _ in range(n)]


def _single_token_words(model_dir: Path) -> list[str]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return [w for w in WORDS if len(tokenizer.encode(w, add_special_tokens=False).ids) == 1]


SINGLE_TOKEN_WORDS: list[str] = []


def ceiling(model_dir: Path, device: str, tokens: int, quick: bool) -> dict[str, Any]:
    """The model's forward pass replayed from a CUDA graph on device inputs (eager on a CPU)."""
    import torch

    from inference.models.loader import load_model
    from inference.models.sentence_transformer import SentenceTransformerModel

    model = load_model(str(model_dir), device, cuda_graphs=False)
    assert isinstance(model, SentenceTransformerModel)
    forward = model._forward  # the module chain the server runs
    cuda = device.startswith("cuda")
    best: dict[str, Any] = {"sentences_per_s": 0.0}
    for rows in [8] if quick else [r for r in (32, 64, 128, 256, 512, 1024) if r * tokens <= 65536]:
        ids = torch.randint(1000, 20000, (rows, tokens), device=device)
        features = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                    "token_type_ids": torch.zeros_like(ids)}  # fmt: skip
        reps = 2 if quick else max(5, min(200, 400_000 // (rows * tokens)))
        with torch.inference_mode():
            if cuda:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(2):
                        forward(features)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    forward(features)
                for _ in range(3):
                    graph.replay()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(reps):
                    graph.replay()
                end.record()
                end.synchronize()
                seconds = start.elapsed_time(end) / 1000
                del graph
            else:
                forward(features)
                t0 = time.perf_counter()
                for _ in range(reps):
                    forward(features)
                seconds = time.perf_counter() - t0
        rate = reps * rows / seconds
        if rate > best["sentences_per_s"]:
            best = {"sentences_per_s": rate, "tokens_per_s": rate * tokens, "rows": rows}
    del model
    if cuda:
        torch.cuda.empty_cache()
    return best


def served_path(
    model_dir: Path, device: str, tokens: int, seconds: float, threads: int, lanes: int
) -> dict[str, Any]:
    """The server's own forward path without HTTP, fronts or batcher: `embed` on pre-tokenized
    chunks of the size the engine's batcher sends (one pass of tokens, at most 1,024 rows) from
    `threads` threads at once (the engine's batches in flight), graphs on `lanes` streams. Between
    the ceiling and the server, it says whether a shortfall is the GPU path (padding, copies, passes
    cut to the graphs' token cap, lanes) or what comes before it."""
    import threading

    import torch

    from inference.models.base import PASS_TOKENS, TokenizedBatch
    from inference.models.cuda_graphs import plan_replays
    from inference.models.loader import load_model
    from inference.models.sentence_transformer import SentenceTransformerModel
    from inference.server_settings import InferenceSettings

    model = load_model(str(model_dir), device, gpu_streams=lanes)
    assert isinstance(model, SentenceTransformerModel)
    rows = min(
        InferenceSettings(device="cuda", workers=8).resolved_max_batch_size(), max(1, PASS_TOKENS // tokens)
    )
    batch = TokenizedBatch.filled(rows, tokens, 1000)
    graphs = model._graphs
    replays = []
    if graphs is not None:
        replays = [bucket for bucket, _ in plan_replays(batch.lengths, graphs.widths, graphs.max_tokens)]
        for bucket in set(replays):
            graphs.capture(bucket)
    for _ in range(3):
        model.embed(batch)
    done = [0] * threads
    stop = time.monotonic() + seconds
    embed = model.embed

    def work(i: int) -> None:
        while time.monotonic() < stop:
            embed(batch)
            done[i] += 1

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    if graphs is not None:
        graphs.stop_capturing(5)
        graphs.release()
    model.to_host()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    rate = sum(done) * rows / elapsed
    return {"sentences_per_s": rate, "rows": rows, "replays": [f"{b.rows}x{b.width}" for b in replays],
            "threads": threads, "lanes": lanes}  # fmt: skip


def server_counts(port: int) -> dict[str, float]:
    """Sums over every version of the server's batching counters (for rows per pass, padding)."""
    wanted = {
        names.FORWARD_PASSES + "_total": "passes", names.BATCH_SIZE + "_count": "batches",
        names.BATCH_SIZE + "_sum": "texts", names.TOKENS + "_total": "tokens",
        names.PADDED_TOKENS + "_total": "padded_tokens",
    }  # fmt: skip
    sums = dict.fromkeys(wanted.values(), 0.0)
    for sample in metric_samples(port):
        if sample.name in wanted:
            sums[wanted[sample.name]] += sample.value
    return sums


def write_bodies(path: Path, texts: list[str], per_request: int, model: str) -> None:
    with path.open("wb") as out:
        for i in range(0, len(texts) - per_request + 1, per_request):
            out.write(json.dumps({"input": texts[i : i + per_request], "model": model}).encode() + b"\n")


def warmed_up(wrk: str, target: Target, tokens: int, args: argparse.Namespace, tmp: Path) -> Path:
    """The request bodies of one length (the same texts for every server), after a dropped
    warm-up run of them against `target`."""
    per_request = TEXTS_PER_REQUEST[tokens]
    bodies = tmp / f"bodies-{tokens}.jsonl"
    write_bodies(bodies, make_texts(per_request * 512, tokens, seed=tokens), per_request, target.model)
    run_wrk(wrk, target, args.concurrency, args.threads, math.ceil(args.warmup_s), bodies)
    return bodies


def measured(wrk: str, target: Target, tokens: int, args: argparse.Namespace, bodies: Path) -> dict[str, Any]:
    """wrk's measured seconds on `bodies`: sentences/s, p50/p99 and every answer's status."""
    output = run_wrk(wrk, target, args.concurrency, args.threads, math.ceil(args.measure_s), bodies)
    return parse_wrk_output(output, args.concurrency, TEXTS_PER_REQUEST[tokens])


def row(
    server: str, shape: str, tokens: int, found: dict[str, Any], ceil: dict[str, Any],
    args: argparse.Namespace, ready_s: float, memory: int | None,
) -> dict[str, Any]:  # fmt: skip
    """One server's figures at one shape and length, beside the ceiling of the same run."""
    return {
        "server": server, "shape": shape, "tokens": tokens, "texts_per_request": TEXTS_PER_REQUEST[tokens],
        "concurrency": args.concurrency, "sentences_per_s": found["sentences_per_s"],
        "tokens_per_s": found["sentences_per_s"] * tokens, "p50_ms": found["p50_ms"],
        "p99_ms": found["p99_ms"], "codes": found["codes"],
        "ceiling_sentences_per_s": ceil["sentences_per_s"], "ceiling_rows": ceil["rows"],
        "share_of_ceiling": found["sentences_per_s"] / ceil["sentences_per_s"],
        "server_ready_s": ready_s, "gpu_memory_used_mib_when_ready": memory,
    }  # fmt: skip


def serve(model_dir: Path, args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    launcher = "import typer; from canaryflow.app.commands.serve import serve; typer.run(serve)"
    cmd = [
        sys.executable, "-c", launcher,
        "--model-uri", str(model_dir), "--model-name", "enc", "--port", str(port),
        "--workers", str(args.workers), "--device", args.device, *args.server_arg,
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.Popen(cmd, cwd=ROOT, env=env), port


def measure_shape(
    shape: str, model_dir: Path, args: argparse.Namespace, wrk: str, rows: list[dict[str, Any]],
    save: Callable[[], None],
) -> dict[int, dict[str, Any]]:  # fmt: skip
    """Append each length's row to `rows` and `save()` after each, so a run stopped at its time
    limit keeps every row it finished. Returns the ceilings, for the peer's rows."""
    ceilings = {t: ceiling(model_dir, args.device, t, args.quick) for t in args.tokens}
    for t, c in ceilings.items():
        print(f"  {shape:<10} {t:>3} tokens  ceiling {c['sentences_per_s']:>10,.0f} sent/s "
              f"{c['tokens_per_s']:>12,.0f} tokens/s (batch {c['rows']})", flush=True)  # fmt: skip
    paths: dict[int, dict[str, Any]] = {}
    if args.served_path_s > 0:
        for t in args.tokens:
            path = paths[t] = served_path(model_dir, args.device, t, args.served_path_s, 4, args.lanes)
            share = path["sentences_per_s"] / ceilings[t]["sentences_per_s"]
            print(f"  {shape:<10} {t:>3} tokens  served path {path['sentences_per_s']:>10,.0f} sent/s "
                  f"({share:.0%} of ceiling; chunks of {path['rows']} as {'+'.join(path['replays'])}, "
                  f"{path['threads']} threads)", flush=True)  # fmt: skip
    server, port = serve(model_dir, args)
    try:
        t0 = time.monotonic()
        wait_ready(port, server, timeout_s=300)
        ready_s = time.monotonic() - t0
        memory = gpu_memory_used_mib() if args.device.startswith("cuda") else None
        target = Target(port, "/v1/embeddings", "enc")
        with tempfile.TemporaryDirectory(prefix="bench-sizes-") as tmp:
            for t in args.tokens:
                bodies = warmed_up(wrk, target, t, args, Path(tmp))
                spies = []
                if args.profile:
                    spies = start_profilers(server.pid, args.measure_s, args.profile, f"{shape}-{t}")
                before = server_counts(port)
                found = measured(wrk, target, t, args, bodies)
                after = server_counts(port)
                for spy in spies:
                    spy.wait(timeout=60)
                counts = {k: after[k] - before[k] for k in after}
                r = {
                    **row("canaryflow", shape, t, found, ceilings[t], args, ready_s, memory),
                    # what the server did in the measured seconds: texts per batch, replays per batch
                    # (a batch's chunks cut to the graphs' buckets), padding's share of the tokens
                    "texts_per_batch": counts["texts"] / max(counts["batches"], 1),
                    "passes_per_batch": counts["passes"] / max(counts["batches"], 1),
                    "padding_share": 1 - counts["tokens"] / max(counts["padded_tokens"], 1),
                    "served_path_sentences_per_s": paths[t]["sentences_per_s"] if t in paths else None,
                }  # fmt: skip
                rows.append(r)
                save()
                print(f"  {shape:<10} {t:>3} tokens  server  {_figures(r)}; "
                      f"{r['texts_per_batch']:.0f} texts and {r['passes_per_batch']:.1f} passes a batch, "
                      f"padding {r['padding_share']:.0%}", flush=True)  # fmt: skip
    finally:
        stop_server(server)
    return ceilings


def measure_peer(
    shape: str, model_dir: Path, args: argparse.Namespace, wrk: str, ceilings: dict[int, dict[str, Any]],
    rows: list[dict[str, Any]], save: Callable[[], None],
) -> None:  # fmt: skip
    """infinity-emb on the same folder, lengths, texts and load as canaryflow's server, started
    once per shape after that server has stopped (so the two never share the device)."""
    from bench.peers import infinity_server as peer

    with peer.started(str(model_dir), args.device, args.peer_batch_size) as running:
        memory = gpu_memory_used_mib() if args.device.startswith("cuda") else None
        target = Target(running.port, peer.ROUTE, running.model)
        with tempfile.TemporaryDirectory(prefix="bench-sizes-peer-") as tmp:
            for t in args.tokens:
                found = measured(wrk, target, t, args, warmed_up(wrk, target, t, args, Path(tmp)))
                rows.append(row(args.peer, shape, t, found, ceilings[t], args, running.ready_s, memory))
                save()
                print(f"  {shape:<10} {t:>3} tokens  {args.peer}  {_figures(rows[-1])}", flush=True)


def _figures(r: dict[str, Any]) -> str:
    return (
        f"{r['sentences_per_s']:>10,.0f} sent/s {r['tokens_per_s']:>12,.0f} tokens/s  "
        f"p99 {r['p99_ms']:.0f} ms  {r['share_of_ceiling']:.0%} of ceiling  {r['codes']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minilm", default=None, help="MiniLM folder (default: the packaged model)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--shapes", default="minilm,bert-base,bert-large")
    parser.add_argument("--tokens", default="24,48,128,512")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--server-arg", action="append", default=None, help="default: --engine")
    parser.add_argument("--concurrency", type=int, default=128, help="wrk connections")
    parser.add_argument("--threads", type=int, default=4, help="wrk threads")
    parser.add_argument("--measure-s", type=float, default=5.0)
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="one small ceiling batch (a CPU smoke run)")
    parser.add_argument("--models-dir", default=None, help="where the built folders go (default: a temp dir)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "encoder_sizes.json"))
    parser.add_argument("--table", default=None, help="print the table of this JSON report and stop")
    parser.add_argument(
        "--served-path-s",
        type=float,
        default=0.0,
        help="also time the server's forward path in-process this long (no HTTP, no batcher)",
    )
    parser.add_argument("--lanes", type=int, default=2, help="--served-path-s: GPU streams, as the engine's")
    parser.add_argument(
        "--profile", default=None, help="dir: py-spy stacks of every server process per length"
    )
    parser.add_argument("--peer", default=None, choices=["infinity"], help="also measure this server")
    parser.add_argument("--peer-batch-size", type=int, default=128, help="infinity's --batch-size")
    args = parser.parse_args()
    if args.table:
        print("\n".join(table_lines(json.loads(Path(args.table).read_text()))))
        return
    args.tokens = [int(t) for t in args.tokens.split(",")]
    unknown = [t for t in args.tokens if t not in TEXTS_PER_REQUEST]
    if unknown:
        parser.error(f"--tokens: {unknown} not among {sorted(TEXTS_PER_REQUEST)}")
    args.server_arg = ["--engine"] if args.server_arg is None else args.server_arg
    if args.peer:
        from bench.peers import infinity_server as peer

        if not peer.installed():
            parser.error(f"--peer {args.peer}: infinity_emb is not importable ({peer.INSTALL})")
    wrk = find_wrk()
    if wrk is None:
        parser.error("wrk not found: run `bash bench/tools.sh` (unpacks it into .tools/)")
    if args.minilm is None:
        from canaryflow.adapters.model_assets import minilm_path

        args.minilm = str(minilm_path())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    minilm = Path(args.minilm).resolve()
    SINGLE_TOKEN_WORDS[:] = _single_token_words(minilm)
    models = Path(args.models_dir or tempfile.mkdtemp(prefix="bench-encoders-"))
    gpu = None
    if args.device.startswith("cuda"):
        import torch

        gpu = torch.cuda.get_device_name(0)
    rows: list[dict[str, Any]] = []
    peer_report: dict[str, Any] | None = None
    if args.peer:
        peer_report = {"label": peer.label(args.device, args.peer_batch_size), "errors": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def report() -> dict[str, Any]:
        return {"gpu": gpu, "settings": vars(args), "rows": rows, "peer": peer_report}

    def save() -> None:
        out.write_text(json.dumps(report(), indent=2))

    shapes = args.shapes.split(",")
    for shape in shapes:
        if shape not in SHAPES:
            parser.error(f"--shapes: {shape!r} not among {sorted(SHAPES)}")
    for shape in shapes:
        model_dir = build_model(shape, minilm, models)
        ceilings = measure_shape(shape, model_dir, args, wrk, rows, save)
        if peer_report is not None:
            try:
                measure_peer(shape, model_dir, args, wrk, ceilings, rows, save)
            except Exception as exc:  # the table says so; the next shape still runs
                print(f"  {shape:<10} peer {args.peer} failed: {exc!r}", flush=True)
                peer_report["errors"].append({"shape": shape, "error": repr(exc)})
                save()
    print("\n" + "\n".join(table_lines(report())))


if __name__ == "__main__":
    main()
