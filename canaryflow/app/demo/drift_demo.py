"""The demo's last act: the champion's traffic changes topic and the controller's drift monitor says so.

Like the rollouts, the demo only does what the world would: the load generator starts asking about
finance, medicine and programming instead of orders, travel, cooking and sport. The inference server's
prediction log, the controller's monitor (reference captured when v2 became champion, windows of the
demo's drift policy), its `canaryflow_drift_*` metrics, Prometheus and the notifier do the rest; the
demo reads the verdict from `GET /models/{model}/drift`, the gauge from Prometheus, and the alert from
its notification receiver.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from canaryflow.app.demo.environment import MODEL, DemoEnvironment
from canaryflow.app.local.sentences import sentence
from canaryflow.app.local.topics import new_topic_sentence

SHIFTED_SHARE = 0.6  # of requests on the new topics once the shift starts


@dataclass
class DriftOutcome:
    detected: bool = False
    version: str = ""
    seconds: float = 0.0
    prometheus_value: float | None = None
    verdict: dict[str, Any] = field(default_factory=dict)
    notified: str = ""
    reason: str = ""


def _shifted(rng: random.Random) -> str:
    return new_topic_sentence(rng) if rng.random() < SHIFTED_SHARE else sentence(rng)


def _wait(get: Callable[[], dict[str, Any] | None], until: Callable[[dict[str, Any]], bool],
          timeout_s: float) -> dict[str, Any] | None:  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = get()
        if status is not None and until(status):
            return status
        time.sleep(1.0)
    return None


def _prometheus_value(env: DemoEnvironment, version: str, timeout_s: float = 15.0) -> float | None:
    if env.prometheus is None:
        return None
    query = f'canaryflow_drift_detected{{model="{MODEL}",version="{version}"}}'
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"{env.prometheus.url}/api/v1/query", params={"query": query}, timeout=5).json()
            result = body.get("data", {}).get("result", [])
            if result and float(result[0]["value"][1]) == 1.0:
                return 1.0
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(1.0)
    return 0.0


def _notification(env: DemoEnvironment, version: str, timeout_s: float = 15.0) -> str:
    """The drift notice's title as the demo's notification receiver got it ("" if it did not)."""
    if env.notifications is None:
        return ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for message in list(env.notifications.chat):
            if f"champion v{version} drifts" in str(message["title"]):
                return str(message["title"])
        time.sleep(0.5)
    return ""


def run_drift(env: DemoEnvironment, console: Console, timeout_s: float = 60.0) -> DriftOutcome:
    outcome = DriftOutcome()
    auth = {"Authorization": f"Bearer {env.api_token}"}
    http = httpx.Client(base_url=env.controller_url, timeout=10.0, headers=auth)

    def status() -> dict[str, Any] | None:
        response = http.get(f"/models/{MODEL}/drift")
        return response.json() if response.status_code == 200 else None

    console.print(
        "[bold]drift[/bold]: waiting for the monitor's reference of the champion and a quiet window"
    )

    def quiet_window(s: dict[str, Any]) -> bool:
        return s["reference"]["state"] == "ready" and s["evaluations"]["no_drift"] > 0 and not s["drift"]

    quiet = _wait(status, quiet_window, timeout_s)
    if quiet is None:
        outcome.reason = f"no quiet window of the champion within {timeout_s:.0f}s (see logs/controller.log)"
        return outcome
    outcome.version = quiet["version"]
    policy = quiet["policy"]
    console.print(f"  champion v{quiet['version']}: reference of {quiet['reference']['samples']} predictions;"
                  f" windows of {policy['window_s']:.0f}s, at most {policy['false_alarms_per_month']}"
                  " false alarms a month")  # fmt: skip
    assert env.load is not None
    console.print(f"  load generator: {SHIFTED_SHARE:.0%} of requests now on finance, medicine, programming")
    started = time.monotonic()
    env.load.sentence = _shifted
    try:
        found = _wait(status, lambda s: bool(s["drift"]), timeout_s)
    finally:
        env.load.sentence = sentence
    if found is None:
        outcome.reason = f"no drift reported within {timeout_s:.0f}s of the shift"
        return outcome
    outcome.detected, outcome.seconds, outcome.verdict = True, time.monotonic() - started, found["verdict"]
    version = found["version"]
    table = Table(title=f"drift of {MODEL} v{version}, {outcome.seconds:.0f}s after the topics shifted")
    for column in ("check", "statistic", "threshold", "drift"):
        table.add_column(column)
    for check in found["verdict"]["checks"]:
        colour = "red" if check["drift"] else "green"
        stat, threshold = check["statistic"], check["threshold"]
        table.add_row(check["name"], f"{stat:.3g}" if stat is not None else "-",
                      f"{threshold:.3g}" if threshold is not None else "-",
                      f"[{colour}]{check['drift']}[/{colour}]")  # fmt: skip
    console.print(table)
    outcome.prometheus_value = _prometheus_value(env, version)
    if outcome.prometheus_value is not None:
        series = f'canaryflow_drift_detected{{model="{MODEL}",version="{version}"}}'
        console.print(f"  Prometheus: {series} = {outcome.prometheus_value:g}")
    outcome.notified = _notification(env, version)
    console.print(f"  alert: the receiver got {outcome.notified or 'no drift notification'}; the verdict is"
                  f" also at GET {env.controller_url}/models/{MODEL}/drift and in MLflow's version tag"
                  f" canaryflow.drift")  # fmt: skip
    return outcome
