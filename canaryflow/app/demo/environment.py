"""Everything the demo runs, started in order and stopped in reverse, leaving no process behind.

Real parts only: an MLflow server (SQLite), a bare git remote as the GitOps repo with the local
stand-in for Argo CD following it, the multi-version inference server, Prometheus when installed
(else the controller scrapes the server's /metrics itself), the controller with its webhook
registered in MLflow through MLflow's own API and its notifications sent to a local receiver (a JSON
webhook as a chat channel would get, and CloudEvents), and an open-loop load generator.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from mlflow.entities.webhook import WebhookEvent, WebhookEventStr
from mlflow.tracking import MlflowClient
from pydantic import SecretStr
from rich.markup import escape

from canaryflow.adapters.model_assets import Variant, register_minilm
from canaryflow.app.local.gitops_sync import GitOpsSync, RoutingFileWriter
from canaryflow.app.local.gitremote import init_bare_remote
from canaryflow.app.local.loadgen import LoadGenerator
from canaryflow.app.local.mlflow_server import MlflowServer, start_mlflow
from canaryflow.app.local.notify_receiver import NotificationReceiver
from canaryflow.app.local.process import ManagedProcess, free_port, http_ok
from canaryflow.app.local.prometheus import (
    INSTALL_HINT,
    PrometheusNotInstalled,
    PrometheusServer,
    start_prometheus,
)
from canaryflow.kernel.types import RolloutSpec
from controller.auth.identity import Sessions
from controller.auth.settings import AuthSettings

MODEL = "minilm"
ENVIRONMENT = "production"
# Only alias changes start rollouts in the demo's trigger rules.
WEBHOOK_EVENTS: list[WebhookEventStr | WebhookEvent] = ["model_version_alias.created"]
# Share of requests the inference server writes to its prediction log (the drift monitor's input).
PREDICTION_LOG_RATE = 0.25

Say = Callable[[str], None]


@dataclass
class DemoConfig:
    workdir: Path
    fast: bool = False
    rate: float = 0.0  # requests/s of the load generator; 0 picks a default for the mode
    policy: str = "demo"

    @property
    def load_rate(self) -> float:
        return self.rate or (40.0 if self.fast else 24.0)


@dataclass
class DemoEnvironment:
    config: DemoConfig
    say: Say
    processes: list[ManagedProcess] = field(default_factory=list)
    mlflow: MlflowServer | None = None
    prometheus: PrometheusServer | None = None
    sync: GitOpsSync | None = None
    load: LoadGenerator | None = None
    controller_url: str = ""
    inference_url: str = ""
    controller_port: int = 0
    remote: Path | None = None
    metrics_env: dict[str, str] = field(default_factory=dict)
    notifications: NotificationReceiver | None = None
    api_token: str = ""  # the demo's own reads of the controller's API
    session_secret: str = ""  # signs the console's sessions and the demo user's login link

    # --- paths a user looks at afterwards ------------------------------------------------------

    @property
    def logs(self) -> Path:
        return self.config.workdir / "logs"

    @property
    def reports(self) -> Path:
        return self.config.workdir / "reports"

    # --- start-up ------------------------------------------------------------------------------

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.reports.mkdir(parents=True, exist_ok=True)
        self._start_mlflow()
        self._register_champion()
        self._start_gitops()
        self._start_inference()
        self._start_metrics()
        self._start_controller()
        self._register_webhook()
        self._start_load()

    def _start_mlflow(self) -> None:
        self.say("starting MLflow (SQLite backend, local artifacts)")
        self.mlflow = start_mlflow(self.config.workdir / "mlflow")
        self.processes.append(self.mlflow.process)

    def _register_champion(self) -> None:
        assert self.mlflow is not None
        self.say(f"registering all-MiniLM-L6-v2 as {MODEL} version 1 (alias champion)")
        v1 = self.register("original")
        MlflowClient(self.mlflow.tracking_uri).set_registered_model_alias(MODEL, "champion", v1)

    def register(self, variant: Variant, seed: int = 0) -> str:
        """A new registry version of the model; MLflow's own chatter goes to the registry log."""
        assert self.mlflow is not None
        with (
            open(self.logs / "registry.log", "a") as log,
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
        ):
            return register_minilm(self.mlflow.tracking_uri, MODEL, variant=variant, seed=seed)

    def _gitops_env(self) -> dict[str, str]:
        assert self.remote is not None
        return {
            "CANARYFLOW_GITOPS_REMOTE_URL": str(self.remote),
            "CANARYFLOW_GITOPS_WORKDIR": str(self.config.workdir / "gitops-controller"),
            "CANARYFLOW_GITOPS_TRAFFIC_MODE": "configmap",
        }

    def _start_gitops(self) -> None:
        from gitops.factory import git_repo_from_settings
        from gitops.gitops_settings import GitOpsSettings

        self.remote = init_bare_remote(self.config.workdir / "gitops.git")
        self.say(f"GitOps remote {self.remote}: committing the stable state (v1 at 100%)")
        settings = GitOpsSettings(
            remote_url=str(self.remote),
            workdir=self.config.workdir / "gitops-bootstrap",
            traffic_mode="configmap",
        )
        initial = RolloutSpec(rollout_id="initial", model=MODEL, baseline_version="1", canary_version="1")
        git_repo_from_settings(settings).commit_step(initial, 100, "promote")
        self.sync = GitOpsSync(
            remote=str(self.remote),
            checkout=self.config.workdir / "gitops-sync",
            model=MODEL,
            environment=ENVIRONMENT,
            apply=RoutingFileWriter(self.config.workdir / "routing.yaml"),
        ).start()

    def _start_inference(self) -> None:
        assert self.mlflow is not None
        port = free_port()
        self.inference_url = f"http://127.0.0.1:{port}"
        self.say(f"starting the inference server on {self.inference_url} (routing from the GitOps repo)")
        argv = [
            str(Path(sys.executable).with_name("canaryflow")), "serve",
            "--routing-file", str(self.config.workdir / "routing.yaml"),
            "--tracking-uri", self.mlflow.tracking_uri,
            "--port", str(port),
            "--prediction-log-rate", str(PREDICTION_LOG_RATE),
            "--prediction-log-dir", str(self.predictions),
        ]  # fmt: skip
        proc = ManagedProcess("inference", argv, self.logs / "inference.log", env={"HF_HUB_OFFLINE": "1"})
        self.processes.append(proc)
        proc.wait_until(lambda: http_ok(f"{self.inference_url}/ready"), 300, "ready")

    @property
    def predictions(self) -> Path:
        return self.config.workdir / "predictions"

    def _start_metrics(self) -> None:
        # The controller's port is chosen now so that Prometheus scrapes its /metrics (drift) too.
        self.controller_port = free_port()
        targets = [self.inference_url.removeprefix("http://"), f"127.0.0.1:{self.controller_port}"]
        try:
            self.prometheus = start_prometheus(self.config.workdir / "prometheus", targets, interval_s=1.0)
        except PrometheusNotInstalled:
            self.say(
                f"Prometheus not found ({INSTALL_HINT}); falling back to reading the inference server's "
                "/metrics directly (same observations, no query UI)"
            )
            self.metrics_env = {
                "CANARYFLOW_METRICS_BACKEND": "scrape",
                "CANARYFLOW_METRICS_SCRAPE_TARGETS": json.dumps([f"{self.inference_url}/metrics"]),
            }
            return
        self.processes.append(self.prometheus.process)
        self.say(f"Prometheus on {self.prometheus.url}, scraping the inference server and the controller")
        self.metrics_env = {
            "CANARYFLOW_METRICS_BACKEND": "prometheus",
            "CANARYFLOW_METRICS_PROMETHEUS_URL": self.prometheus.url,
        }

    def _controller_config(self) -> Path:
        """The controller's settings as a YAML file a user can read (secrets stay in the env)."""
        path = self.config.workdir / "canaryflow.yaml"
        rule = {"kind": "alias", "alias": "challenger", "baseline_alias": "champion",
                "policy": self.config.policy, "environment": ENVIRONMENT}  # fmt: skip
        drift = {"enabled": True, "policy": "demo", "location": str(self.predictions), "models": [MODEL],
                 "interval_s": 1.0}  # fmt: skip
        controller = {"triggers": {MODEL: [rule]}, "drift": drift}
        path.write_text(yaml.safe_dump({"controller": controller}, sort_keys=False))
        return path

    def _notify_env(self) -> dict[str, str]:
        """Notifications to a local receiver; the demo prints each chat message as it arrives."""
        self.notifications = NotificationReceiver(
            self.config.workdir / "notifications.jsonl",
            lambda title: self.say(
                f"[magenta]notification[/magenta] {escape(title.removeprefix('canaryflow: '))}"
            ),
        ).start()
        links = {
            "report": f"{self.reports.resolve()}/{{rollout}}.html",
            "rollout": f"{self.controller_url}/rollouts/{{rollout}}",
        }
        return {**self.notifications.settings_env(), "CANARYFLOW_NOTIFY_LINKS": json.dumps(links)}

    def _start_controller(self) -> None:
        assert self.mlflow is not None
        port = self.controller_port or free_port()
        self.controller_url = f"http://127.0.0.1:{port}"
        self.webhook_secret = secrets.token_urlsafe(24)
        self.api_token, self.session_secret = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
        env = {
            "CANARYFLOW_CONFIG": str(self._controller_config()),
            "CANARYFLOW_CONTROLLER_PORT": str(port),
            "CANARYFLOW_CONTROLLER_MLFLOW_WEBHOOK_SECRET": self.webhook_secret,
            "CANARYFLOW_CONTROLLER_REGISTRY_TRACKING_URI": self.mlflow.tracking_uri,
            "CANARYFLOW_CONTROLLER_INFERENCE_URL": self.inference_url,
            "CANARYFLOW_CONTROLLER_RECONCILE_INTERVAL_S": "1",
            "CANARYFLOW_CONTROLLER_API_TOKEN": self.api_token,
            "CANARYFLOW_CONTROLLER_AUTH__SESSION_SECRET": self.session_secret,
            "CANARYFLOW_CONTROLLER_AUTH__COOKIE_SECURE": "false",  # plain http on loopback
            "CANARYFLOW_CONTROLLER_AUTH__ROLES": json.dumps([{"subject": "user:demo", "role": "operator"}]),
            "CANARYFLOW_WORKFLOWS_ENGINE": "local",
            **self._gitops_env(),
            **self.metrics_env,
            **self._notify_env(),
        }
        db = self.config.workdir / "controller.db"
        argv = [str(Path(sys.executable).with_name("canaryflow")), "controller", "serve", "--db", str(db)]
        self.say(f"starting the controller on {self.controller_url} (local workflow runner)")
        proc = ManagedProcess("controller", argv, self.logs / "controller.log", env=env)
        self.processes.append(proc)
        proc.wait_until(lambda: http_ok(f"{self.controller_url}/healthz"), 120, "answering /healthz")
        self.say(f"console: {self.controller_url}/console · one-time login as demo: {self.console_login()}")

    def console_login(self) -> str:
        """A single-use login link of the demo user (an operator of every model) to the console."""
        sessions = Sessions(AuthSettings(session_secret=SecretStr(self.session_secret)))
        return f"{self.controller_url}/auth/once?token={sessions.login_link_token('demo', ttl_s=3600)}"

    def _register_webhook(self) -> None:
        assert self.mlflow is not None
        client = MlflowClient(self.mlflow.tracking_uri)
        client.create_webhook(
            name="canaryflow-controller",
            url=f"{self.controller_url}/webhooks/mlflow",
            events=WEBHOOK_EVENTS,
            secret=self.webhook_secret,
        )
        self.say("registered the controller's webhook in MLflow (HMAC secret shared with the controller)")

    def _start_load(self) -> None:
        self.load = LoadGenerator(self.inference_url, MODEL, rate=self.config.load_rate, max_batch=2).start()
        self.say(f"load generator: {self.config.load_rate:.0f} requests/s of realistic sentences")

    # --- shutdown ------------------------------------------------------------------------------

    def close(self) -> None:
        if self.load is not None:
            self.load.stop()
        if self.sync is not None:
            self.sync.stop()
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.stop()
        self.processes.clear()
        if self.notifications is not None:
            self.notifications.stop()

    def wait_forever(self) -> None:
        """`--keep`: leave everything up until Ctrl-C."""
        while all(p.alive() for p in self.processes):
            time.sleep(1)
