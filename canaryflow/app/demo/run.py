"""Runs the demo end to end and prints where to look afterwards."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.table import Table

from canaryflow.app.demo.drift_demo import DriftOutcome, run_drift
from canaryflow.app.demo.environment import MODEL, DemoConfig, DemoEnvironment
from canaryflow.app.demo.flow import RolloutOutcome, run_rollout
from policies import load_policy


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _summary(console: Console, env: DemoEnvironment, outcomes: list[RolloutOutcome]) -> None:
    table = Table(title="canaryflow demo: summary", show_lines=False)
    for col in ("rollout", "canary", "decision", "expected", "time", "report"):
        table.add_column(col)
    for o in outcomes:
        colour = "green" if o.as_expected else "red"
        table.add_row(
            o.title, f"v{o.canary_version}", f"[{colour}]{o.decision}[/{colour}]", o.expected,
            f"{o.seconds:.0f}s", str(o.report or "-"),
        )  # fmt: skip
    console.print(table)
    assert env.remote is not None and env.mlflow is not None
    console.print(f"GitOps repo (bare remote): {env.remote}")
    console.print(f"  read the audit log:  git --git-dir {env.remote} log --format='%h %s%n%(trailers)' main")
    log = subprocess.run(
        ["git", "--git-dir", str(env.remote), "log", "--format=  %h %s", "main"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    console.print(log.rstrip())
    if env.notifications is not None:
        console.print(
            f"Notifications: {len(env.notifications.chat)} chat messages, {len(env.notifications.events)} "
            f"CloudEvents received ({env.config.workdir / 'notifications.jsonl'})"
        )
    console.print(f"Reports: {env.reports}")
    console.print(f"Logs: {env.logs}")
    console.print(f"Controller settings: {env.config.workdir / 'canaryflow.yaml'}")


def run_demo(config: DemoConfig, keep: bool, console: Console | None = None) -> int:
    """Returns 0 when both rollouts reached the expected decision, 1 otherwise."""
    console = console or Console()
    _quiet_libraries()
    signal.signal(signal.SIGTERM, _interrupt)
    env = DemoEnvironment(config, say=lambda m: console.print(f"[dim]·[/dim] {m}"))
    outcomes: list[RolloutOutcome] = []
    drift = DriftOutcome()
    started = time.monotonic()
    # Past the policy's max duration the controller decides (rolls back) on its own: waiting that
    # long means a slow but valid analysis is never cut short by the demo giving up first.
    timeout_s = load_policy(config.policy).max_duration_s + 60.0
    try:
        env.start()
        from canaryflow.adapters.metrics.factory import MetricsSettings, metrics_source_from_settings

        metrics = metrics_source_from_settings(
            MetricsSettings.model_validate(
                {k.removeprefix("CANARYFLOW_METRICS_").lower(): v for k, v in env.metrics_env.items()}
            )
        )
        time.sleep(3.0)  # a little baseline traffic before the first event
        outcomes.append(run_rollout(env, metrics, console, "good canary", "perturbed", "promote", timeout_s))
        outcomes.append(run_rollout(env, metrics, console, "bad canary", "slower", "rollback", timeout_s))
        client_champion = _champion(env)
        console.print(f"alias champion of {MODEL} now on version {client_champion}")
        drift = run_drift(env, console)
        if not drift.detected:
            console.print(f"[red]drift not shown[/red]: {drift.reason}")
        _summary(console, env, outcomes)
        console.print(f"demo finished in {time.monotonic() - started:.0f}s")
        if keep:
            assert env.mlflow is not None
            console.print(
                f"--keep: MLflow UI {env.mlflow.url} · console {env.controller_url}/console "
                f"(one-time login as demo: {env.console_login()}) · "
                + (f"Prometheus {env.prometheus.url} · " if env.prometheus else "")
                + "Ctrl-C to stop everything"
            )
            env.wait_forever()
    except KeyboardInterrupt:
        console.print("interrupted: stopping every process the demo started")
        return 130
    finally:
        env.close()
    return 0 if outcomes and all(o.as_expected for o in outcomes) and drift.detected else 1


def _quiet_libraries() -> None:
    """The demo's screen is the progress view: keep MLflow's run links and progress bars off it
    (they are still in the servers' logs)."""
    quiet = {
        "TQDM_DISABLE": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "MLFLOW_LOGGING_LEVEL": "WARNING",
    }
    for name, value in quiet.items():
        os.environ.setdefault(name, value)
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def _champion(env: DemoEnvironment) -> str | None:
    from canaryflow.adapters.registry import MlflowRegistry

    assert env.mlflow is not None
    return MlflowRegistry(env.mlflow.tracking_uri).version_for_alias(MODEL, "champion")


def default_workdir() -> Path:
    return Path("demo-output") / time.strftime("%Y%m%d-%H%M%S")
