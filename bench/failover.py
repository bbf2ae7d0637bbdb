"""Failover of the controller: two replicas on one PostgreSQL, the leader SIGKILLed mid-commit and
mid-delivery-burst; how long until the follower leads, and what was lost, doubled or committed twice.

Everything runs for real: PostgreSQL (Debian's binaries, a fresh cluster), MLflow, a bare git remote,
two `canaryflow controller serve` processes with the local runner and the scrape metrics source (one
traffic target per model, the canary as fast as the baseline: every rollout should be promoted).

The leader is armed to die by SIGKILL right after its `--crash-after`-th git push (pushed, not yet
recorded, the fenced push transaction still open). Meanwhile a sender delivers signed MLflow webhooks,
round-robin over both replicas, and retries on the other one whatever was not acknowledged (as a
load-balanced Service and MLflow's retries do), re-sending every fifth acknowledged delivery once (a
duplicate). It reports:

- takeover_s: from the leader's death to the follower's `canaryflow_controller_leader` gauge reading 1;
- lost: acknowledged deliveries missing from the shared inbox; doubled: inbox rows or rollouts beyond
  one per delivery; unsettled: inbox rows never processed;
- double_commits: (rollout, weight, decision) triples that appear more than once in the remote's history;
- outcomes: each rollout's final phase (all `promoted` expected) and the `champion` alias after it;
- notices: every replica sends its notices as CloudEvents to one receiver here; a notice the dead
  leader still owed is in the shared outbox and adopted by a live replica (controller/shared_outbox.py).
  Missing: a rollout without its `started` or its `promoted` notice; repeated: an id received more
  than once (at-least-once: the same id, so receivers de-duplicate); owed at the end: outbox rows.

    .venv/bin/python bench/failover.py            # table on stdout, bench/failover.json
    .venv/bin/python bench/failover.py --models 5 --ttl 15 --renew 3

The test tests/controller/test_failover.py runs the same scenario, smaller, and asserts on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gitops.history import read_log  # noqa: E402
from tests.controller.conftest import signed_mlflow  # noqa: E402
from tests.controller.process import AUTH, Controller, controller_env  # noqa: E402
from tests.controller.test_crash_restart import POLICY as CRASH_POLICY  # noqa: E402
from tests.controller.traffic import TrafficServer  # noqa: E402

SECRET = "failover-secret"
POLICY = CRASH_POLICY.replace("name: fast", "name: failover")  # the crash test's, under its own name


class NoticeSink:
    """The CloudEvents receiver every replica notifies: the `ce-id` of each notice, in arrival order."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                with lock:
                    sink.ids.append(self.headers.get("ce-id", ""))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Burst:
    """The sender: every delivery once acknowledged by some replica (retried until then)."""

    urls: list[str]
    acknowledged: dict[str, int] = field(default_factory=dict)  # delivery id -> HTTP status
    duplicates_answered: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    failures: int = 0
    _turn: int = 0

    def send(self, headers: dict[str, str], body: bytes, deadline_s: float = 60.0) -> None:
        delivery = headers["X-MLflow-Delivery-Id"]
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            url = self.urls[self._turn % len(self.urls)]
            self._turn += 1
            self.attempts += 1
            try:
                status = httpx.post(
                    url + "/webhooks/mlflow", content=body, headers=headers, timeout=5
                ).status_code
            except httpx.HTTPError:
                status = 0
            if status in (200, 202):
                self.acknowledged.setdefault(delivery, status)
                return
            self.failures += 1
            time.sleep(0.05)
        raise RuntimeError(f"delivery {delivery} not acknowledged by any replica within {deadline_s} s")

    def resend(self, headers: dict[str, str], body: bytes) -> None:
        """The same delivery again (same id, body, signature), to the other replica: a duplicate."""
        for url in self.urls:
            try:
                answer = httpx.post(url + "/webhooks/mlflow", content=body, headers=headers, timeout=5)
            except httpx.HTTPError:
                continue
            if answer.status_code == 200:
                self.duplicates_answered[answer.json().get("status", "")] += 1
                return


def _leads(url: str) -> bool:
    try:
        text = httpx.get(url + "/metrics", timeout=1).text
    except httpx.HTTPError:
        return False
    return "canaryflow_controller_leader 1.0" in text


def _wait(predicate: Any, timeout_s: float, what: str, every_s: float = 0.05) -> Any:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")


def _trailers(remote: Path) -> list[dict[str, str]]:
    return [e.trailers for e in read_log(remote) if "Rollout-Id" in e.trailers]


def run_failover(
    work: Path,
    database_url: str,
    tracking_uri: str,
    remote: Path,
    *,
    models: int = 3,
    fillers: int = 40,
    crash_after_push: int = 2,
    ttl_s: float = 15.0,
    renew_s: float = 3.0,
    finish_timeout_s: float = 120.0,
    replicas: int = 2,
    shards: int = 1,
) -> dict[str, Any]:
    """The scenario (module docstring); returns the report. Raises when a phase never happens."""
    from mlflow.tracking import MlflowClient
    from psycopg import connect

    client = MlflowClient(tracking_uri)
    tag = uuid.uuid4().hex[:6]
    names = [f"failover-{tag}-{i}" for i in range(models)]
    for name in names:
        client.create_registered_model(name)
        for _ in range(2):
            client.create_model_version(name, source=f"s3://models/{name}")
        client.set_registered_model_alias(name, "champion", "1")
        client.set_registered_model_alias(name, "challenger", "2")
    work.mkdir(parents=True, exist_ok=True)
    policy = work / "policy.yaml"
    policy.write_text(POLICY)
    traffic = [TrafficServer(name, {"1": 10.0, "2": 10.0}).__enter__() for name in names]
    sink = NoticeSink()
    started_replicas: list[Controller] = []
    try:
        for label in "abcdefgh"[:replicas]:
            home = work / label
            home.mkdir(parents=True, exist_ok=True)
            env = {
                **controller_env(SECRET, tracking_uri, remote, home, policy),
                "HF_HUB_OFFLINE": "1",
                "CANARYFLOW_METRICS_SCRAPE_TARGETS": json.dumps([t.url for t in traffic]),
                "CANARYFLOW_CONTROLLER_DATABASE_URL": database_url,
                "CANARYFLOW_CONTROLLER_LEADER_TTL_S": str(ttl_s),
                "CANARYFLOW_CONTROLLER_LEADER_RENEW_S": str(renew_s),
                "CANARYFLOW_CONTROLLER_SHARDS": str(shards),
                "CANARYFLOW_NOTIFY_CLOUDEVENTS_URL": sink.url,
            }
            started_replicas.append(Controller(home, env))
        leader, *others = started_replicas
        follower = others[0]
        leader.start(crash_at=f"after_push@{crash_after_push}")
        _wait(lambda: _leads(leader.url), 30, "the first replica to lead")
        for other in others:
            other.start()
        if shards == 1:
            time.sleep(2 * renew_s)
            if any(_leads(other.url) for other in others):
                raise RuntimeError("two replicas lead at once")
        else:  # each replica gets its share of the shards
            _wait(
                lambda: all(_leads(other.url) for other in others), 30 + 4 * renew_s, "every replica a shard"
            )
        burst = Burst([r.url for r in started_replicas])
        died: dict[str, float] = {}

        def watch_leader() -> None:
            assert leader.proc is not None
            code = leader.proc.proc.wait()
            died["at"] = time.monotonic()
            died["code"] = code

        led: dict[str, float] = {}

        def watch_follower() -> None:  # polled every 50 ms: the takeover is at most that late
            if shards == 1:
                _wait(lambda: _leads(follower.url), finish_timeout_s + ttl_s, "the follower to lead")
            else:  # every shard the dead replica held is held by a live one again
                _wait(lambda: "at" in died, finish_timeout_s + ttl_s, "the armed replica to die")
                assert leader.proc is not None
                dead = f"{socket.gethostname()}-{leader.proc.pid}-%"
                with connect(database_url, autocommit=True) as conn:

                    def orphaned() -> int:
                        sql = (
                            "SELECT COUNT(*) FROM cf_lease WHERE name LIKE 'controller-%%' AND "
                            "(holder LIKE %s OR expires_at < extract(epoch from clock_timestamp()))"
                        )
                        row = conn.execute(sql, (dead,)).fetchone()
                        return int(row[0]) if row else 0

                    _wait(lambda: orphaned() == 0, finish_timeout_s + ttl_s, "the dead replica's shards")
            led["at"] = time.monotonic()

        threading.Thread(target=watch_leader, daemon=True).start()
        threading.Thread(target=watch_follower, daemon=True).start()
        sent_after_death = 0
        started = time.monotonic()
        deliveries: list[tuple[dict[str, str], bytes]] = []
        for name in names:  # the triggers: one rollout per model
            deliveries.append(
                signed_mlflow({"name": name, "alias": "challenger", "version": "2"}, secret=SECRET)
            )
        n = 0
        while True:
            if deliveries:
                headers, body = deliveries.pop(0)
            else:  # fillers: alias changes no rule starts a rollout for (settled as ignored)
                n += 1
                data = {"name": names[n % models], "alias": f"audit-{n}", "version": "2"}
                headers, body = signed_mlflow(data, secret=SECRET)
            burst.send(headers, body)
            if len(burst.acknowledged) % 5 == 0:
                burst.resend(headers, body)
            if "at" in died:
                sent_after_death += 1
            if n >= fillers and sent_after_death >= 20:
                break
            if time.monotonic() - started > finish_timeout_s:
                raise RuntimeError(f"the leader never died at push {crash_after_push}:\n{leader.log_tail()}")
            time.sleep(0.05)
        if died.get("code") != -9:
            raise RuntimeError(f"the leader ended with {died.get('code')}, not SIGKILL:\n{leader.log_tail()}")
        _wait(lambda: "at" in led, ttl_s + 30, f"the follower to lead:\n{follower.log_tail()}")
        takeover_s = led["at"] - died["at"]

        def finished() -> list[dict[str, Any]] | None:
            rollouts = httpx.get(follower.url + "/rollouts", headers=AUTH, timeout=5).json()
            mine = [r for r in rollouts if r["model"] in names]
            return mine if len(mine) >= models and all(r["finished_at"] for r in mine) else None

        rollouts = _wait(finished, finish_timeout_s, f"every rollout to finish:\n{follower.log_tail()}", 0.5)
        with connect(database_url, autocommit=True) as conn:
            rows = conn.execute("SELECT delivery_id, processed_at FROM cf_inbox").fetchall()

            def owed() -> int:
                row = conn.execute("SELECT COUNT(*) FROM cf_notify_outbox").fetchone()
                return int(row[0]) if row else 0

            # The dead leader's notices wait for its heartbeat to go stale, then a few seconds.
            with contextlib.suppress(RuntimeError):
                _wait(lambda: owed() == 0, ttl_s + 30, "the notices owed to be sent", 0.5)
            owed_at_end = owed()
        stored = Counter(r[0] for r in rows)
        commits = [c for c in _trailers(remote) if c["Rollout-Id"] in {r["id"] for r in rollouts}]
        triples = Counter((c["Rollout-Id"], c["Traffic-Weight"], c["Decision"]) for c in commits)
        report = {
            "replicas": replicas,
            "shards": shards,
            "models": models,
            "deliveries": len(burst.acknowledged),
            "delivery_attempts": burst.attempts,
            "refused_or_unreachable": burst.failures,
            "duplicates_resent": sum(burst.duplicates_answered.values()),
            "duplicates_answered": dict(burst.duplicates_answered),
            "leader_exit": died["code"],
            "crash_after_push": crash_after_push,
            "ttl_s": ttl_s,
            "renew_s": renew_s,
            "takeover_s": round(takeover_s, 2),
            "lost": sum(1 for d in burst.acknowledged if d not in stored),
            "doubled": sum(n - 1 for n in stored.values()) + max(0, len(rollouts) - models),
            "unsettled": sum(1 for r in rows if r[1] is None),
            "double_commits": sum(1 for n in triples.values() if n > 1),
            "commits": len(commits),
            "outcomes": {r["model"]: r["phase"] for r in rollouts},
            "champions": {
                name: client.get_model_version_by_alias(name, "champion").version for name in names
            },
            "notices": len(set(sink.ids)),
            "notices_missing": sum(
                1
                for r in rollouts
                for event in ("started", "promoted")
                if not any(i.startswith(f"{r['id']}.{event}.") for i in sink.ids)
            ),
            "notices_repeated": sum(n - 1 for n in Counter(sink.ids).values()),
            "notices_owed_at_end": owed_at_end,
        }
        return report
    finally:
        for replica in started_replicas:
            replica.stop()
        for server in traffic:
            server.__exit__()
        sink.stop()


def table(report: dict[str, Any]) -> str:
    rows = [
        ("takeover (leader SIGKILLed -> follower leads)", f"{report['takeover_s']:.2f} s (target <= 30 s)")
        if report["shards"] == 1
        else ("takeover (replica SIGKILLed -> its shards held again)",
              f"{report['takeover_s']:.2f} s (target <= 60 s)"),
        ("replicas / shards", f"{report['replicas']} / {report['shards']}"),
        ("lease ttl / renew", f"{report['ttl_s']:.0f} s / {report['renew_s']:.0f} s"),
        ("deliveries acknowledged (attempts, refused/unreachable)",
         f"{report['deliveries']} ({report['delivery_attempts']}, {report['refused_or_unreachable']})"),
        ("duplicates re-sent (answered)", f"{report['duplicates_resent']} {report['duplicates_answered']}"),
        ("lost / doubled / unsettled deliveries",
         f"{report['lost']} / {report['doubled']} / {report['unsettled']}"),
        ("double commits (of commits)", f"{report['double_commits']} (of {report['commits']})"),
        ("notices: distinct / missing / repeated (same id) / owed at the end",
         f"{report['notices']} / {report['notices_missing']} / {report['notices_repeated']} / "
         f"{report['notices_owed_at_end']}"),
        ("rollouts' outcomes", ", ".join(f"{p}" for p in report["outcomes"].values())),
        ("champions after", ", ".join(report["champions"].values())),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"| {name:<{width}} | {value} |" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--fillers", type=int, default=60)
    parser.add_argument("--crash-after", type=int, default=2, help="the leader dies after this git push")
    parser.add_argument("--ttl", type=float, default=15.0, help="leader_ttl_s (the default setting)")
    parser.add_argument("--renew", type=float, default=3.0, help="leader_renew_s (the default setting)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--shards", type=int, default=1, help=">1: the armed replica's shards are taken over")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "failover.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from canaryflow.app.local.gitremote import init_bare_remote
    from canaryflow.app.local.mlflow_server import start_mlflow
    from canaryflow.app.local.postgres import start_postgres

    with tempfile.TemporaryDirectory(prefix="canaryflow-failover-") as tmp:
        work = Path(tmp)
        postgres = start_postgres()
        mlflow = start_mlflow(work / "mlflow")
        try:
            report = run_failover(
                work / "run",
                postgres.url,
                mlflow.tracking_uri,
                init_bare_remote(work / "gitops.git"),
                models=args.models,
                fillers=args.fillers,
                crash_after_push=args.crash_after,
                ttl_s=args.ttl,
                renew_s=args.renew,
                replicas=args.replicas,
                shards=args.shards,
            )
        finally:
            mlflow.stop()
            postgres.stop()
    report["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report["machine"] = f"{os.cpu_count()} cores"
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(table(report))
    print(f"\nJSON: {args.out}")
    ok = report["takeover_s"] <= (30 if args.shards == 1 else 60) and not (
        report["lost"]
        or report["doubled"]
        or report["double_commits"]
        or report["notices_missing"]
        or report["notices_owed_at_end"]
    )
    return 0 if ok and set(report["outcomes"].values()) == {"promoted"} else 1


if __name__ == "__main__":
    raise SystemExit(main())
