"""`canaryflow demo --server mlserver`: the same loop for a server canaryflow did not write.

Seldon MLServer with its MLflow runtime serves a small tabular model registered in MLflow. Everything
is real and none of it knows canaryflow: MLServer runs from its own environment the container the
`mlserver` profile renders (started by the local kubelet from the committed overlay, its artifacts
downloaded by the rendered init container), HAProxy splits requests by the committed HTTPRoute's
weights (the local mesh), Prometheus finds each version's pod by file discovery, and the controller,
woken by MLflow's signed webhook, judges the canary only on the metrics MLServer exports itself. A
good version is promoted; a slower one is rolled back.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from mlflow.tracking import MlflowClient

from canaryflow.app.local.gitops_sync import GitOpsSync
from canaryflow.app.local.gitremote import init_bare_remote
from canaryflow.app.local.kubelet import ImageEnvironment, image_repository
from canaryflow.app.local.loadgen import LoadGenerator, V2Inference
from canaryflow.app.local.mesh import LocalMesh, ReadinessEndpoint, RenderedPods
from canaryflow.app.local.mlflow_server import start_mlflow
from canaryflow.app.local.mlserver import DEFAULT_ENV, mlserver_environment
from canaryflow.app.local.process import ManagedProcess, free_port, http_ok
from canaryflow.app.local.prometheus import has_scraped, start_prometheus
from canaryflow.app.local.scorer_registry import FEATURES, register_scorer
from canaryflow.kernel.contracts.phases import RolloutPhase
from canaryflow.kernel.contracts.providers import ARM_MODEL_LABEL, ARM_VERSION_LABEL
from canaryflow.kernel.rollout import TERMINAL
from canaryflow.kernel.types import RolloutSpec
from gitops.factory import git_repo_from_settings
from gitops.gitops_settings import GitOpsSettings, RenderOptions
from policies import load_policy

MODEL = "scorer"
ENVIRONMENT = "production"
# MLServer runs without its worker pool here (mlserver.LOCAL_SETTINGS): a request's work holds its
# event loop, so the demo's load stays far below saturation and latency is the model's own.
BASE_DELAY_MS = 5.0
SLOW_DELAY_MS = 25.0
DEFAULT_RATE = 30.0
SERVERS = ("mlserver",)
MAX_DURATION_S = 300

Say = Callable[[str], None]


def demo_policy(fast: bool) -> dict[str, object]:
    """MLServer behind a Gateway, judged on its own REST latency and errors; short demo steps."""
    hold = 5 if fast else 15
    return {
        "name": "mlserver-demo",
        "traffic_mode": "httproute",
        "serving": {"profile": "mlserver"},
        "metrics_provider": "mlserver",
        "steps": [
            {"weight": 20, "min_duration_s": hold, "min_samples": 150},
            {"weight": 50, "min_duration_s": hold, "min_samples": 150},
        ],
        "metrics": [
            {"name": "latency", "kind": "latency", "quantiles": [0.5], "tolerance": 0.10, "alternative": 0.5},
            {"name": "error_rate", "kind": "error_rate", "tolerance": 0.01, "alternative": 0.05},
        ],
        "min_baseline_samples": 150,
        "evaluate_every_s": 1,
        "max_duration_s": MAX_DURATION_S,
    }


@dataclass
class ServerDemo:
    workdir: Path
    say: Say
    fast: bool = False
    rate: float = DEFAULT_RATE
    mlserver_env: Path = DEFAULT_ENV
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    tracking_uri: str = ""
    controller_url: str = ""
    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def run(self) -> int:
        """0 when the good version was promoted and the slow one rolled back, 1 otherwise."""
        with self.stack:
            remote, mesh, prometheus_url = self._start()
            load = LoadGenerator(mesh.url, MODEL, rate=self.rate, protocol=V2Inference(FEATURES)).start()
            self.stack.callback(load.stop)
            self.say(f"load generator: {self.rate:.0f} requests/s through the proxy on {mesh.url}")
            time.sleep(3.0)
            good = self._rollout("good version", BASE_DELAY_MS, RolloutPhase.PROMOTED)
            bad = self._rollout("slow version", SLOW_DELAY_MS, RolloutPhase.ROLLED_BACK)
            self.say(
                f"load: {load.stats.ok} ok, {load.stats.failed} failed, by version {load.stats.by_version}"
            )
            self.say(f"Prometheus: {prometheus_url} · controller: {self.controller_url}/rollouts")
            self.say(f"GitOps repo (bare remote): {remote}")
            for line in _git_log(remote):
                self.say(f"  {line}")
            return 0 if good and bad else 1

    def _start(self) -> tuple[Path, LocalMesh, str]:
        logs = self.workdir / "logs"
        mlserver_repo, mlserver_image = mlserver_environment(self.mlserver_env)
        self.say("starting MLflow (SQLite backend, local artifacts)")
        mlflow = start_mlflow(self.workdir / "mlflow")
        self.stack.callback(mlflow.stop)
        self.tracking_uri = mlflow.tracking_uri
        v1 = self._register(BASE_DELAY_MS)
        MlflowClient(self.tracking_uri).set_registered_model_alias(MODEL, "champion", v1)
        self.say(f"registered a tabular scorer as {MODEL} version {v1} (alias champion)")

        policy_path = self.workdir / "mlserver-policy.yaml"
        policy_path.write_text(yaml.safe_dump(demo_policy(self.fast), sort_keys=False))
        remote = init_bare_remote(self.workdir / "gitops.git")
        options = RenderOptions(tracking_uri=self.tracking_uri)
        settings = GitOpsSettings(
            remote_url=str(remote), workdir=self.workdir / "gitops-bootstrap", render=options
        )
        initial = RolloutSpec(rollout_id="initial", model=MODEL, baseline_version=v1, canary_version=v1,
                              policy=str(policy_path))  # fmt: skip
        policy = load_policy(str(policy_path))
        repo = git_repo_from_settings(settings, lambda _: policy.traffic_mode, lambda _: policy.serving)
        repo.commit_step(initial, 100, "promote")
        self.say(f"GitOps remote {remote}: v{v1} at 100% on MLServer (profile mlserver, HTTPRoute)")

        controller_port = free_port()
        targets = self.workdir / "pod-targets.json"
        targets.write_text("[]")
        prometheus = start_prometheus(
            self.workdir / "prometheus", [f"127.0.0.1:{controller_port}"], interval_s=1.0, file_sd=targets
        )
        self.stack.callback(prometheus.stop)
        images = {
            mlserver_repo: mlserver_image,
            image_repository(options.downloader_image): ImageEnvironment(bin_dir=Path(sys.executable).parent),
        }
        pods = RenderedPods(self.workdir / "gitops-sync", ENVIRONMENT, images, self.workdir / "pods")
        arm = {ARM_MODEL_LABEL: MODEL}
        mesh = LocalMesh(
            pods,
            self.workdir,
            targets,
            scraped=lambda v: has_scraped(prometheus.url, {**arm, ARM_VERSION_LABEL: v}),
        )
        self.stack.callback(mesh.stop)
        sync = GitOpsSync(str(remote), self.workdir / "gitops-sync", MODEL, ENVIRONMENT, apply=mesh)
        self.say("starting MLServer for the stable version from the committed overlay (init container first)")
        sync.start()
        self.stack.callback(sync.stop)
        readiness = ReadinessEndpoint(mesh).start()
        self.stack.callback(readiness.stop)
        self.say(f"HAProxy on {mesh.url} splitting by the committed weights; Prometheus on {prometheus.url}")
        self._start_controller(controller_port, remote, policy_path, prometheus.url, readiness.url, logs)
        return remote, mesh, prometheus.url

    def _register(self, delay_ms: float) -> str:
        with open(self.workdir / "registry.log", "a") as log, contextlib.redirect_stdout(log), \
                contextlib.redirect_stderr(log):  # fmt: skip
            return register_scorer(self.tracking_uri, MODEL, delay_ms=delay_ms)

    def _start_controller(
        self, port: int, remote: Path, policy: Path, prometheus_url: str, readiness_url: str, logs: Path
    ) -> None:
        config = self.workdir / "canaryflow.yaml"
        rule = {"kind": "alias", "alias": "challenger", "baseline_alias": "champion", "policy": str(policy),
                "environment": ENVIRONMENT}  # fmt: skip
        config.write_text(
            yaml.safe_dump(
                {
                    "controller": {"triggers": {MODEL: [rule]}},
                    "gitops": {"render": {"tracking_uri": self.tracking_uri}},
                },
                sort_keys=False,
            )
        )
        secret = secrets.token_urlsafe(24)
        env = {
            "CANARYFLOW_CONFIG": str(config),
            "CANARYFLOW_CONTROLLER_PORT": str(port),
            "CANARYFLOW_CONTROLLER_MLFLOW_WEBHOOK_SECRET": secret,
            "CANARYFLOW_CONTROLLER_API_TOKEN": self.api_token,
            "CANARYFLOW_CONTROLLER_REGISTRY_TRACKING_URI": self.tracking_uri,
            "CANARYFLOW_CONTROLLER_INFERENCE_URL": readiness_url,
            "CANARYFLOW_CONTROLLER_RECONCILE_INTERVAL_S": "1",
            "CANARYFLOW_WORKFLOWS_ENGINE": "local",
            "CANARYFLOW_GITOPS_REMOTE_URL": str(remote),
            "CANARYFLOW_GITOPS_WORKDIR": str(self.workdir / "gitops-controller"),
            "CANARYFLOW_METRICS_BACKEND": "prometheus",
            "CANARYFLOW_METRICS_PROMETHEUS_URL": prometheus_url,
        }
        self.controller_url = f"http://127.0.0.1:{port}"
        argv = [str(Path(sys.executable).with_name("canaryflow")), "controller", "serve",
                "--db", str(self.workdir / "controller.db")]  # fmt: skip
        proc = ManagedProcess("controller", argv, logs / "controller.log", env=env)
        self.stack.callback(proc.stop)
        proc.wait_until(lambda: http_ok(f"{self.controller_url}/healthz"), 120, "answering /healthz")
        MlflowClient(self.tracking_uri).create_webhook(
            name="canaryflow-controller",
            url=f"{self.controller_url}/webhooks/mlflow",
            events=["model_version_alias.created"],
            secret=secret,
        )
        self.say(f"controller on {self.controller_url} (local runner), its webhook registered in MLflow")

    def _rollout(self, label: str, delay_ms: float, expected: RolloutPhase) -> bool:
        version = self._register(delay_ms)
        self.say(f"{label}: {MODEL} version {version} ({delay_ms:g} ms a request); alias challenger set")
        MlflowClient(self.tracking_uri).set_registered_model_alias(MODEL, "challenger", version)
        # Past the policy's max duration the controller decides on its own: wait a little longer.
        record = self._wait_for(version, timeout_s=MAX_DURATION_S + 120)
        record = record or {"id": "-", "phase": "not started", "reason": ""}
        ok = record["phase"] == expected
        verdict = "as expected" if ok else f"expected {expected}"
        self.say(f"{label}: rollout {record['id']} {record['phase']} ({verdict}): {record.get('reason', '')}")
        return ok

    def _wait_for(self, version: str, timeout_s: float) -> dict[str, object] | None:
        deadline = time.monotonic() + timeout_s
        headers = {"Authorization": f"Bearer {self.api_token}"}
        found: dict[str, object] | None = None
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                url = f"{self.controller_url}/rollouts"
                items = httpx.get(url, params={"model": MODEL}, headers=headers, timeout=5).json()
                mine = [r for r in items if r.get("canary_version") == version]
                found = mine[-1] if mine else None
                if found is not None and found.get("phase") in TERMINAL:
                    return found
            time.sleep(1.0)
        return found


def _git_log(remote: Path) -> list[str]:
    import subprocess

    done = subprocess.run(["git", "--git-dir", str(remote), "log", "--oneline", "main"], capture_output=True,
                          text=True, check=False)  # fmt: skip
    return done.stdout.splitlines()


def run_server_demo(server: str, workdir: Path, say: Say, fast: bool, rate: float) -> int:
    if server not in SERVERS:
        raise ValueError(f"--server: {server!r} is not one of {', '.join(SERVERS)}")
    workdir.mkdir(parents=True, exist_ok=True)
    return ServerDemo(workdir=workdir, say=say, fast=fast, rate=rate or DEFAULT_RATE).run()
