"""The real-size table puts the peer's rows beside canaryflow's: canaryflow's ratio to the peer only
at the same shape, length, texts per request and connections, non-200 answers visible, a peer that
failed on a shape said, and reports written before the peer existed still read as canaryflow's."""

from __future__ import annotations

from typing import Any

from bench.encoder_sizes_table import table_lines


def _row(server: str | None, shape: str, tokens: int, rate: float, codes: dict[str, int]) -> dict[str, Any]:
    row = {
        "shape": shape, "tokens": tokens, "texts_per_request": 16, "concurrency": 128,
        "sentences_per_s": rate, "tokens_per_s": rate * tokens, "p50_ms": 10.0, "p99_ms": 20.0,
        "codes": codes, "ceiling_sentences_per_s": 1000.0, "ceiling_rows": 256,
        "share_of_ceiling": rate / 1000.0, "gpu_memory_used_mib_when_ready": 7000,
    }  # fmt: skip
    return row if server is None else {**row, "server": server}


def _cells(lines: list[str]) -> dict[tuple[str, str, str], list[str]]:
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| ")]
    return {(c[0], c[1], c[2]): c for c in rows[1:]}  # the header is the first


def rows_of(lines: list[str]) -> list[list[str]]:
    return list(_cells(lines).values())


def test_ratio_to_the_peer_at_the_same_point_only() -> None:
    report = {
        "gpu": "NVIDIA H100 80GB HBM3",
        "rows": [
            _row("canaryflow", "bert-base", 128, 900.0, {"200": 900}),
            _row("canaryflow", "bert-base", 512, 400.0, {"200": 400}),
            _row("infinity", "bert-base", 128, 300.0, {"200": 290, "timeout": 3}),
            _row("infinity", "bert-large", 512, 100.0, {"200": 100}),  # another shape: no ratio for 512
            _row("infinity", "bert-large", 128, 0.0, {}),  # nothing came back in the measured seconds
        ],
        "peer": {"label": "infinity-emb 0.0.78 (torch engine, fp16, batch 128)",
                 "errors": [{"shape": "bert-large", "error": "TimeoutError('server not ready')"}]},
    }  # fmt: skip
    lines = table_lines(report)
    rows = _cells(lines)
    assert rows[("bert-base", "128", "canaryflow")][10:12] == ["90%", "3.00"]
    assert rows[("bert-base", "512", "canaryflow")][11] == "-"
    assert rows[("bert-base", "128", "infinity")][10:12] == ["30%", "-"]
    assert rows[("bert-base", "128", "infinity")][13] == "{'timeout': 3}"
    assert rows[("bert-base", "128", "canaryflow")][13] == "-"
    assert rows[("bert-large", "128", "infinity")][13] == "none answered"
    assert lines[-2:] == [
        "peer: infinity-emb 0.0.78 (torch engine, fp16, batch 128)",
        "peer failed on bert-large: TimeoutError('server not ready')",
    ]


def test_a_report_from_before_the_peer_reads_as_canaryflow() -> None:
    lines = table_lines({"gpu": None, "rows": [_row(None, "minilm", 24, 500.0, {"200": 500})]})
    assert lines[0].startswith("Device: cpu.")
    assert rows_of(lines) == [["minilm", "24", "canaryflow", "16", "500", "12,000", "10.0", "20.0",
                               "1,000", "24,000", "50%", "-", "7000", "-"]]  # fmt: skip
