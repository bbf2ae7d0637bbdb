"""The benchmark table compares canaryflow with the peer only at the same point and generator,
keeps every non-200 answer visible, and says when the peer failed instead of dropping it."""

from __future__ import annotations

from typing import Any

from bench.inference_table import table_lines


def _row(server: str, generator: str, per_request: int, c: int, rate: float, codes: dict) -> dict[str, Any]:
    return {
        "server": server, "generator": generator, "texts_per_request": per_request, "concurrency": c,
        "sentences_per_s": rate, "requests_per_s": rate / per_request, "p50_ms": 1.0, "p99_ms": 2.0,
        "codes": codes,
    }  # fmt: skip


def _report(peer: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "raw": {"encode_batch256_sentences_per_s": 100.0, "encode_single_p50_ms": 5.0,
                "encode_single_p99_ms": 9.0, "mean_tokens": 24.0},
        "runs": [
            _row("canaryflow", "python", 1, 1, 50.0, {"200": 250}),
            _row("canaryflow", "wrk", 1, 64, 300.0, {"200": 1500, "429": 7, "timeout": 1}),
            _row("canaryflow", "wrk", 32, 8, 400.0, {"200": 60}),
        ],
        "server_ready_s": 6.0, "gpu_memory_used_mib_when_ready": None,
        "server_vs_encode_max_abs_diff": 1e-8, "peer": peer,
    }  # fmt: skip


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_vs_peer_only_at_the_same_point_and_generator() -> None:
    peer = {
        "label": "infinity-emb 0.0.78 (torch engine, fp16, batch 128; shim: ...)", "shim": "...",
        "server_ready_s": 20.0, "gpu_memory_used_mib_when_ready": 3000,
        "server_vs_encode_max_abs_diff": 2e-8,
        "runs": [_row("infinity", "python", 1, 1, 25.0, {"200": 125}),
                 _row("infinity", "python", 1, 64, 100.0, {"200": 500})],  # python, not wrk
    }  # fmt: skip
    lines = table_lines(_report(peer))
    rows = {(c[0], c[1], c[2], c[3]): c for c in map(_cells, lines) if c[0] in ("canaryflow", "infinity")}
    assert rows[("canaryflow", "python", "1 sentence(s)", "1")][8:10] == ["0.50", "2.00"]
    assert rows[("canaryflow", "wrk", "1 sentence(s)", "64")][9] == "-"  # the peer's 64 was Python's
    assert rows[("canaryflow", "wrk", "1 sentence(s)", "64")][10] == "{'429': 7, 'timeout': 1}"
    assert rows[("infinity", "python", "1 sentence(s)", "64")][9] == "-"
    assert any(
        line.startswith("peer: infinity-emb 0.0.78") and "GPU memory in use 3000" in line for line in lines
    )


def test_a_failed_peer_is_said_not_dropped() -> None:
    lines = table_lines(
        _report({"label": "infinity", "error": "RuntimeError('server exited with 1')", "runs": []})
    )
    assert lines[-1] == "peer infinity failed: RuntimeError('server exited with 1')"
    assert sum(1 for line in lines if line.startswith("| canaryflow")) == 3
