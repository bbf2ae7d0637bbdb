"""The table `bench/encoder_sizes.py` prints from its JSON report: one row per server, encoder shape
and length, each beside the model's own graphed forward pass of the same run (the ceiling), and
canaryflow's rows beside the peer's (infinity-emb, `--peer`) at the same point."""

from __future__ import annotations

from typing import Any


def table_lines(report: dict[str, Any]) -> list[str]:
    """One row per server, shape and length; canaryflow's rows say their ratio to the peer's row of
    the same shape, length, texts per request and connections (rows of reports written before the
    peer existed are canaryflow's)."""
    rows = report["rows"]
    peer_rate = {_point(r): r["sentences_per_s"] for r in rows if _server(r) != "canaryflow"}
    lines = [
        f"Device: {report.get('gpu') or 'cpu'}. BERT-base/-large: seeded random weights (throughput "
        "depends on shapes, not values); texts of exactly the given tokens.",
        "| encoder | tokens | server | texts/request | sentences/s | tokens/s | p50 ms | p99 ms | ceiling "
        "sentences/s | ceiling tokens/s | share of ceiling | canaryflow / peer | GPU MiB | non-200 |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        peer = peer_rate.get(_point(r)) if _server(r) == "canaryflow" else None
        vs_peer = f"{r['sentences_per_s'] / peer:.2f}" if peer else "-"
        codes = r.get("codes", {})
        bad = {k: v for k, v in codes.items() if k != "200"} or ("-" if codes.get("200") else "none answered")
        lines.append(
            f"| {r['shape']} | {r['tokens']} | {_server(r)} | {r['texts_per_request']} "
            f"| {r['sentences_per_s']:,.0f} | {r['tokens_per_s']:,.0f} | {r['p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['ceiling_sentences_per_s']:,.0f} "
            f"| {r['ceiling_sentences_per_s'] * r['tokens']:,.0f} | {r['share_of_ceiling']:.0%} | {vs_peer} "
            f"| {r['gpu_memory_used_mib_when_ready']} | {bad} |"
        )  # fmt: skip
    peer_report = report.get("peer")
    if peer_report:
        lines.append(f"peer: {peer_report['label']}")
        lines += [f"peer failed on {e['shape']}: {e['error']}" for e in peer_report["errors"]]
    return lines


def _server(r: dict[str, Any]) -> str:
    return str(r.get("server", "canaryflow"))


def _point(r: dict[str, Any]) -> tuple[str, int, int, int]:
    return r["shape"], r["tokens"], r["texts_per_request"], r["concurrency"]
