"""Console benchmark: the rollout list with 500 rollouts in the store, over real HTTP.

    .venv/bin/python bench/console.py [--rollouts 500] [--requests 200]

The controller's app is built as `canaryflow controller serve` builds it (create_app, then the console,
the actions API and the authentication gate) on a store of N rollouts, each with its steps, verdicts,
transitions and commits, and served by uvicorn on loopback. A logged-in operator (session cookie)
fetches: the list page (`GET /console`, first page of 50 of N), its live refresh (`?fragment=1`), the
JSON rows (`GET /console/api/rollouts`), a filtered list (`?model=...`), and one rollout's page. The
target: the list page answers in under 200 ms (p95) with 500 rollouts. Prints a table and writes
`bench/results/console.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from pydantic import SecretStr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from canaryflow.app.local.process import free_port  # noqa: E402
from canaryflow.kernel.rollout import RolloutState, Started, StepStarted, Transition, apply  # noqa: E402  # noqa: E402
from controller.api.api_context import ControllerContext  # noqa: E402
from controller.api.controller_app import create_app  # noqa: E402
from controller.auth.settings import AuthSettings, RoleGrant  # noqa: E402
from controller.console.routes import mount  # noqa: E402
from controller.controller_settings import ControllerSettings  # noqa: E402
from controller.observability import ControllerMetrics  # noqa: E402
from controller.rollout.records import RolloutRecord, StepRecord  # noqa: E402
from controller.rollout.store import RolloutStore  # noqa: E402

TARGET_MS = 200.0


def fill(store: RolloutStore, n: int) -> None:
    """N rollouts over 50 models, a third of them active, each with two steps and their verdicts."""
    now = time.time()
    verdict = {
        "decision": "promote",
        "decided_at_s": 120.0,
        "checks": [
            {"metric": "latency_p99", "verdict": "pass", "reason": "p99 1.02x baseline (bound 1.10x)"},
            {"metric": "error_rate", "verdict": "pass", "reason": "errors 0.1% vs 0.1% (bound +0.5%)"},
        ],
    }
    for i in range(n):
        rid = f"model-{i % 50:02d}-v{i + 2}-{i:06x}"
        created = now - (n - i) * 60
        store.create_rollout(
            RolloutRecord(
                id=rid, model=f"model-{i % 50:02d}", baseline_version=str(i + 1), canary_version=str(i + 2),
                created_at=created, updated_at=created, reason="alias challenger set",
            )
        )  # fmt: skip
        state = RolloutState()
        for ev in (Started(workflow=f"canaryflow-{rid}"), StepStarted(index=0, weight=10)):
            change: Transition = apply(state, ev)
            store.transition(rid, change, weight=10)
            state = change.after
        for idx, weight in enumerate((10, 50)):
            store.upsert_step(
                rid, StepRecord(index=idx, weight=weight, started_at=created + 60 * idx, status="passed",
                                verdict=verdict),
            )  # fmt: skip
            store.add_commit(rid, f"{i:08x}{idx:032x}", f"step {idx} at {weight}%")
        if i % 3:  # two thirds finished
            store.update(rid, phase="promoted" if i % 5 else "rolled_back", finished_at=created + 300)


def serve(app: Any) -> tuple[uvicorn.Server, str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("the console did not start")


def timed(client: httpx.Client, path: str, count: int) -> dict[str, float]:
    client.get(path).raise_for_status()  # warm
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    ms = np.array(samples)
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "max_ms": float(ms.max()),
        "bytes": len(response.content),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=500)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "console.json")
    args = parser.parse_args(argv)
    load_before = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory() as tmp:
        auth = AuthSettings(
            roles=[RoleGrant(subject="user:bench", role="operator")],
            session_secret=SecretStr("b" * 32),
            cookie_secure=False,
        )
        settings = ControllerSettings(db_path=Path(tmp) / "c.db", auth=auth)
        store = RolloutStore(settings.db_path)
        started = time.perf_counter()
        fill(store, args.rollouts)
        fill_s = time.perf_counter() - started
        ctx = ControllerContext(settings=settings, store=store, metrics=ControllerMetrics(store))
        app = create_app(ctx)
        sessions = mount(app, ctx, None)
        server, url = serve(app)
        with httpx.Client(base_url=url, timeout=30, follow_redirects=False) as client:
            client.get("/auth/once", params={"token": sessions.login_link_token("bench")})
            some = store.rollouts()[-1].id
            pages = {
                "list page (GET /console)": "/console",
                "list refresh (?fragment=1)": "/console?fragment=1",
                "list JSON (/console/api/rollouts)": "/console/api/rollouts",
                "filtered (?model=model-07)": "/console?model=model-07",
                "sorted by model, page 5": "/console?sort=model&order=asc&page=5",
                "rollout page": f"/console/rollouts/{some}",
            }
            results = {name: timed(client, path, args.requests) for name, path in pages.items()}
        server.should_exit = True
        store.close()
    report = {
        "rollouts": args.rollouts,
        "requests_each": args.requests,
        "target_list_p95_ms": TARGET_MS,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_average_1m_before_after": [load_before, round(os.getloadavg()[0], 2)],
        "store_fill_s": round(fill_s, 2),
        "results": results,
        "list_page_meets_target": results["list page (GET /console)"]["p95_ms"] < TARGET_MS,
    }
    print(f"console with {args.rollouts} rollouts, {args.requests} requests each (loopback HTTP, one client)")
    print(f"{'request':<36} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'bytes':>8}")
    for name, r in results.items():
        print(f"{name:<36} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['max_ms']:8.1f} {r['bytes']:8d}")
    print(
        f"list page p95 < {TARGET_MS:.0f} ms: {report['list_page_meets_target']} "
        f"(1-minute load average before/after: {report['load_average_1m_before_after']})"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return 0 if report["list_page_meets_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
