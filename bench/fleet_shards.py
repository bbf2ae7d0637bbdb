"""Sharding at fleet scale: replicas share thousands of rollouts on one PostgreSQL; one is SIGKILLed;
how long until every rollout it reconciled is reconciled again by a live replica.

Each replica is a process of its own running the controller's reconcile loop as `canaryflow
controller serve` builds it with replicas (`canaryflow.app.wiring.build_leadership`: one lease and
fence per shard in the shared database; the real rollout store and local runner on PostgreSQL),
with steps that do nothing (every analysis "not yet", as bench/controller.py's loop-overhead phase):
what is measured is the loop's, the store's and the leases' own work at this scale. Git, MLflow and
Prometheus are left out: 3,000 rollouts' commits and reads are more than the 2-core machine this
runs on can carry (bench/controller.md), and bench/failover.py covers them with a few rollouts.

Each replica prints, after every tick, the models its steps ran for. The bench records, per model,
the replicas that reconciled it and when. After a warm-up (every rollout reconciled at least twice,
every replica holding shards, then two lease lifetimes), the first replica is SIGKILLed; its
rollouts are those it reconciled last; the takeover of a rollout is the time from the kill to its
first reconcile by a live replica; reported: when the last one was taken over (target
<= 60 s), how many of the dead replica's rollouts there were, rollouts reconciled by two live
replicas in the same second after the takeover (0 expected: shards are exclusive), and the ticks'
lengths.

    .venv/bin/python bench/fleet_shards.py --rollouts 3000 --replicas 3 --shards 6
    .venv/bin/python bench/fleet_shards.py --rollouts 300 --ttl 5 --renew 1   # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POLICY = """
name: fleet
steps: [{weight: 10, min_duration_s: 3600}]
"""


def replica(url: str, shards: int, ttl_s: float, renew_s: float, policy_path: str, home: str) -> None:
    """One replica: leases renewed on their thread, the reconcile loop on this one; a line a tick."""
    from pydantic import SecretStr

    from bench.idle_rollouts import idle_step
    from canaryflow.adapters.database import open_database
    from canaryflow.app.wiring import build_leadership
    from controller.controller_settings import ControllerSettings
    from controller.observability import ControllerMetrics
    from controller.reconcile import Reconciler
    from controller.rollout.store import RolloutStore
    from policies import load_policy
    from workflows.local.runner import LocalRunner
    from workflows.steps.base import StepOutcome

    policy = load_policy(policy_path)
    seen: set[str] = set()

    def step(node: Any, step_input: Any) -> StepOutcome:
        seen.add(step_input.spec.model)
        return idle_step(node, step_input)

    settings = ControllerSettings(
        db_path=Path(home) / "c.db",
        mlflow_webhook_secret=SecretStr("x"),
        database_url=SecretStr(url),
        shards=shards,
        leader_ttl_s=ttl_s,
        leader_renew_s=renew_s,
        reconcile_workers=0,
    )
    store = RolloutStore(open_database(url))
    leadership = build_leadership(settings, store)
    runner = LocalRunner(store.db, step, lambda name: policy)
    reconciler = Reconciler(
        settings, store, runner, None, ControllerMetrics(store), policy_loader=lambda n: policy
    )
    reconciler.leads = leadership.leads
    reconciler.owns, reconciler.scope = leadership.owns, leadership.scope
    stop = threading.Event()
    threading.Thread(target=leadership.run, args=(stop,), daemon=True).start()
    print(json.dumps({"identity": leadership.identity}), flush=True)
    while True:
        started = time.time()
        seen.clear()
        try:
            reconciler.tick()
        except Exception as exc:  # a deposed shard's write: the next tick goes on with what it holds
            print(json.dumps({"error": repr(exc)[:200]}), flush=True)
        print(
            json.dumps({"t": time.time(), "tick_s": time.time() - started, "models": sorted(seen)}),
            flush=True,
        )
        if not seen:
            time.sleep(0.5)


def seed(url: str, count: int) -> None:
    """`count` rollouts waiting to start, one model each."""
    from bench.idle_rollouts import seed_rollouts
    from canaryflow.adapters.database import open_database
    from controller.rollout.store import RolloutStore

    store = RolloutStore(open_database(url))
    seed_rollouts(store, "fleet", count)
    store.close()


class Replica:
    def __init__(self, args: argparse.Namespace, url: str, policy: Path, home: Path, label: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, __file__, "--replica", url, "--shards", str(args.shards),
               "--ttl", str(args.ttl), "--renew", str(args.renew), "--policy", str(policy),
               "--home", str(home)]  # fmt: skip
        self.label = label
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
            stderr=open(home / "stderr.log", "w"), text=True,  # noqa: SIM115
        )  # fmt: skip
        self.ticks: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            doc = json.loads(line)
            if "models" in doc:
                self.ticks.append(doc)
            elif "error" in doc:
                self.errors.append(doc["error"])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.5)


def run(args: argparse.Namespace, url: str, work: Path) -> dict[str, Any]:
    policy = work / "policy.yaml"
    policy.write_text(POLICY)
    seeded_at = time.monotonic()
    seed(url, args.rollouts)
    seed_s = time.monotonic() - seeded_at
    replicas = [Replica(args, url, policy, work / label, label) for label in "abcdefgh"[: args.replicas]]
    models = {f"fleet{i}" for i in range(args.rollouts)}
    try:

        def reconciled_by() -> dict[str, dict[str, list[float]]]:
            seen: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
            for r in replicas:
                for tick in list(r.ticks):
                    for model in tick["models"]:
                        seen[model][r.label].append(tick["t"])
            return seen

        def warmed() -> bool:
            seen = reconciled_by()
            return len(seen) == len(models) and all(
                sum(len(v) for v in by.values()) >= 2 for by in seen.values()
            )

        _wait(warmed, args.timeout, "every rollout reconciled twice")
        # The first replica up took every shard; the others take their share as they come.
        _wait(lambda: all(r.ticks and r.ticks[-1]["models"] for r in replicas), args.timeout, "shards spread")
        time.sleep(2 * args.ttl)
        victim = replicas[0]
        before = reconciled_by()
        latest = {m: max((t, label) for label, ts in by.items() for t in ts)[1] for m, by in before.items()}
        owned = {m for m, label in latest.items() if label == victim.label}
        killed_at = time.time()
        victim.kill()
        live = [r for r in replicas if r is not victim]

        def taken_over() -> bool:
            seen = reconciled_by()
            return all(any(t > killed_at for r in live for t in seen[m].get(r.label, [])) for m in owned)

        _wait(taken_over, args.timeout, "the dead replica's rollouts reconciled by a live one")
        seen = reconciled_by()
        takeover = sorted(
            min(t for r in live for t in seen[m].get(r.label, []) if t > killed_at) - killed_at for m in owned
        )
        time.sleep(args.after_s)  # a while after the takeover, for the exclusivity check
        seen = reconciled_by()
        both = 0
        for model in models:
            seconds = [
                {int(t) for t in seen[model].get(r.label, []) if t > killed_at + takeover[-1]} for r in live
            ]
            both += bool(seconds[0] & seconds[1]) if len(seconds) == 2 else 0
        ticks = [t["tick_s"] for r in live for t in r.ticks if t["t"] > killed_at]
        return {
            "rollouts": args.rollouts, "replicas": args.replicas, "shards": args.shards,
            "ttl_s": args.ttl, "renew_s": args.renew, "seed_s": round(seed_s, 1),
            "dead_replica_rollouts": len(owned),
            "takeover_last_s": round(takeover[-1], 2) if takeover else None,
            "takeover_p50_s": round(takeover[len(takeover) // 2], 2) if takeover else None,
            "reconciled_by_two_live_replicas_in_one_second": both,
            "live_tick_s_after_kill": _spread(ticks),
            "errors": sum(len(r.errors) for r in replicas),
        }  # fmt: skip
    finally:
        for r in replicas:
            r.stop()


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"p50": round(sorted(values)[len(values) // 2], 2), "max": round(max(values), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replica", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--policy", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--home", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rollouts", type=int, default=3000)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--shards", type=int, default=6)
    parser.add_argument("--ttl", type=float, default=15.0, help="leader_ttl_s (the default setting)")
    parser.add_argument("--renew", type=float, default=3.0, help="leader_renew_s (the default setting)")
    parser.add_argument("--after-s", type=float, default=10.0, help="watched after the takeover")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fleet_shards.json")
    args = parser.parse_args(argv)
    if args.replica is not None:
        replica(args.replica, args.shards, args.ttl, args.renew, args.policy, args.home)
        return 0
    if args.replicas < 2 or args.shards < args.replicas:
        parser.error("--replicas must be at least 2 and --shards at least --replicas")
    from canaryflow.app.local.postgres import start_postgres

    with tempfile.TemporaryDirectory(prefix="canaryflow-fleet-") as tmp:
        postgres = start_postgres()
        try:
            report = run(args, postgres.url, Path(tmp))
        finally:
            postgres.stop()
    report["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report["machine"] = f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    ok = report["takeover_last_s"] is not None and report["takeover_last_s"] <= 60
    return 0 if ok and not report["reconciled_by_two_live_replicas_in_one_second"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
