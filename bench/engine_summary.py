"""The one-copy targets from `bench/inference.py` reports of one run: each serving mode's best
single-sentence requests/s within p99 <= 50 ms and best sentences/s in 32-sentence requests within
p99 <= 100 ms, its GPU memory once ready, and each against the first report (8 replicas).

    python3 bench/engine_summary.py OUT/replicas8.json OUT/engine8*.json [--json OUT/summary.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SINGLE_P99_MS = 50.0
BATCH_P99_MS = 100.0


def best(runs: list[dict[str, Any]], texts: int, bound_ms: float, key: str) -> dict[str, Any] | None:
    """The run of `texts` per request with the highest `key` among those within the p99 bound;
    a run with any refused or failed request does not count."""
    fit = [r for r in runs if r["texts_per_request"] == texts and r["p99_ms"] <= bound_ms
           and set(r.get("codes", {"200": 1})) <= {"200", 200}]  # fmt: skip
    return max(fit, key=lambda r: r[key]) if fit else None


def summarise(path: Path) -> dict[str, Any]:
    report = json.loads(path.read_text())
    runs = report["runs"]
    single = best(runs, 1, SINGLE_P99_MS, "requests_per_s")
    batch = best(runs, 32, BATCH_P99_MS, "sentences_per_s")
    one = [r for r in runs if r["concurrency"] == 1 and r["texts_per_request"] == 1]
    return {
        "mode": path.stem,
        "gpu": report["machine"].get("gpu"),
        "server_args": report["settings"]["server_args"],
        "gpu_memory_mib": report.get("gpu_memory_used_mib_when_ready"),
        "gpu_memory_mib_after_load": report.get("gpu_memory_used_mib_after_load"),
        "ready_s": report.get("server_ready_s"),
        "single_requests_per_s": single["requests_per_s"] if single else None,
        "single_p99_ms": single["p99_ms"] if single else None,
        "single_concurrency": single["concurrency"] if single else None,
        "batch32_sentences_per_s": batch["sentences_per_s"] if batch else None,
        "batch32_p99_ms": batch["p99_ms"] if batch else None,
        "batch32_concurrency": batch["concurrency"] if batch else None,
        "one_client_p50_ms": one[0]["p50_ms"] if one else None,
    }


def _share(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.0%}" if value and reference else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = [summarise(p) for p in args.reports if p.is_file()]
    if not rows:
        raise SystemExit(f"no report among {[str(p) for p in args.reports]}")
    ref = rows[0]
    print(f"GPU: {ref['gpu']}; reference: {ref['mode']}")
    print(
        "| mode | 1-sentence req/s (p99 ms, c) | vs ref | 32-sentence sent/s (p99 ms, c) | vs ref "
        "| c=1 p50 ms | GPU MiB ready / after load | ready s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        single = row["single_requests_per_s"]
        batch = row["batch32_sentences_per_s"]
        single_at = f"{single or 0:,.0f} ({row['single_p99_ms'] or 0:.0f}, {row['single_concurrency']})"
        batch_at = f"{batch or 0:,.0f} ({row['batch32_p99_ms'] or 0:.0f}, {row['batch32_concurrency']})"
        print(
            f"| {row['mode']} | {single_at} | {_share(single, ref['single_requests_per_s'])} "
            f"| {batch_at} | {_share(batch, ref['batch32_sentences_per_s'])} "
            f"| {row['one_client_p50_ms'] or 0:.2f} | {row['gpu_memory_mib']} / "
            f"{row['gpu_memory_mib_after_load']} | {row['ready_s'] or 0:.1f} |"
        )
    out = args.json or args.reports[0].parent / "summary.json"
    out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
