"""The table `bench/inference.py` prints from its JSON report: one row per measured point, each
saying which server and which load generator measured it, with two ratios from the same run (the
row's sentences/s against raw `encode(batch_size=256)`, and canaryflow's against the peer's at the
same point)."""

from __future__ import annotations

from typing import Any

HEADER = (
    "| server | generator | requests | concurrency | sentences/s | requests/s | p50 ms | p99 ms "
    "| vs encode(256) | vs peer | non-200 |"
)


def _point(run: dict[str, Any]) -> tuple[int, int, str]:
    """Rows compare only at the same point measured by the same generator."""
    return run["texts_per_request"], run["concurrency"], run["generator"]


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def table_lines(report: dict[str, Any]) -> list[str]:
    raw = report.get("raw") or {}
    ceiling = raw.get("encode_batch256_sentences_per_s")
    peer = report.get("peer") or {}
    peer_rate = {_point(r): float(r["sentences_per_s"]) for r in peer.get("runs", [])}
    lines = [HEADER, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    if raw:
        lines.append(f"| raw encode(batch 256) | - | - | - | {ceiling:,.0f} | - | - | - | 1.00 | - | - |")
        lines.append(
            f"| raw encode(1 sentence) | - | - | 1 | - | - | {raw['encode_single_p50_ms']:.2f} | "
            f"{raw['encode_single_p99_ms']:.2f} | - | - | - |"
        )
    for r in [*report["runs"], *peer.get("runs", [])]:
        bad = {k: v for k, v in r["codes"].items() if k != "200"}
        vs_peer = (
            _ratio(r["sentences_per_s"], peer_rate.get(_point(r))) if r["server"] == "canaryflow" else "-"
        )
        lines.append(
            f"| {r['server']} | {r['generator']} | {r['texts_per_request']} sentence(s) | {r['concurrency']} "
            f"| {r['sentences_per_s']:,.0f} | {r['requests_per_s']:,.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {_ratio(r['sentences_per_s'], ceiling)} | {vs_peer} | {bad or '-'} |"
        )
    notes = [f"canaryflow ready in {report['server_ready_s']:.0f} s"]
    if report.get("gpu_memory_used_mib_when_ready"):
        notes.append(f"GPU memory in use {report['gpu_memory_used_mib_when_ready']} MiB")
    notes.append(f"max |server - encode| {report['server_vs_encode_max_abs_diff']:.1e}")
    if raw:
        notes.insert(0, f"mean tokens/sentence {raw['mean_tokens']:.1f}")
    lines += ["", "; ".join(notes)]
    if peer.get("error"):
        lines.append(f"peer {peer['label']} failed: {peer['error']}")
    elif peer:
        peer_notes = [f"peer: {peer['label']}", f"ready in {peer['server_ready_s']:.0f} s"]
        if peer.get("gpu_memory_used_mib_when_ready"):
            peer_notes.append(f"GPU memory in use {peer['gpu_memory_used_mib_when_ready']} MiB")
        peer_notes.append(f"max |peer - encode| {peer['server_vs_encode_max_abs_diff']:.1e}")
        lines.append("; ".join(peer_notes))
    return lines


def print_table(report: dict[str, Any]) -> None:
    print("\n".join(table_lines(report)))
