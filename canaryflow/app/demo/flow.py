"""The demo's story: a good canary that is promoted, then a bad one that is rolled back.

The demo only does what a user would: it sets the `challenger` alias in MLflow and watches the
controller's rollout API. Everything in between — the webhook, the workflow, the commits, the
analysis, the alias moves — is canaryflow working on its own.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from mlflow.tracking import MlflowClient
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from canaryflow.adapters.metrics import MetricsError, MetricsSource
from canaryflow.adapters.model_assets import Variant
from canaryflow.app.demo.environment import MODEL, DemoEnvironment
from canaryflow.app.report import ReportData, StepRecord, TimePoint, render_html
from canaryflow.app.report.model import EvidencePoint, PhaseMark
from canaryflow.kernel.analysis.kinds import METRIC_KINDS
from canaryflow.kernel.analysis.observations import Histogram
from canaryflow.kernel.contracts.phases import RolloutPhase
from canaryflow.kernel.rollout import TERMINAL
from canaryflow.kernel.types import RolloutSpec, Verdict

DECISION_OF_PHASE: dict[str, str] = {RolloutPhase.PROMOTED: "promote", RolloutPhase.ROLLED_BACK: "rollback"}


@dataclass
class RolloutOutcome:
    title: str
    canary_version: str
    expected: str
    rollout_id: str = ""
    phase: str = ""
    decision: str = ""
    reason: str = ""
    seconds: float = 0.0
    report: Path | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def as_expected(self) -> bool:
        return self.decision == self.expected


class RolloutWatcher:
    """Polls the controller for one rollout, samples the evidence, and renders the live view."""

    def __init__(self, env: DemoEnvironment, metrics: MetricsSource, outcome: RolloutOutcome) -> None:
        self.env = env
        self.metrics = metrics
        self.outcome = outcome
        self.started = time.time()
        self.timeline: list[TimePoint] = []
        self.latency: tuple[Histogram | None, Histogram | None] = (None, None)
        self.detail: dict[str, Any] = {}
        self.evidence: list[EvidencePoint] = []
        self.marks: list[PhaseMark] = []
        self._marked: set[str] = set()
        auth = {"Authorization": f"Bearer {env.api_token}"}
        self._http = httpx.Client(base_url=env.controller_url, timeout=10.0, headers=auth)

    def find_rollout(self, timeout_s: float = 120.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            resp = self._http.get("/rollouts", params={"model": MODEL})
            for record in resp.json():
                if record["canary_version"] == self.outcome.canary_version and record["created_at"] >= (
                    self.started - 5
                ):
                    return str(record["id"])
            time.sleep(0.5)
        raise TimeoutError(
            f"no rollout for version {self.outcome.canary_version} within {timeout_s:.0f}s "
            f"(see {self.env.logs / 'controller.log'})"
        )

    def poll(self) -> None:
        self.detail = self._http.get(f"/rollouts/{self.outcome.rollout_id}").json()
        self._sample()
        self._record_evidence()

    def _mark(self, key: str, t_s: float, label: str) -> None:
        if key not in self._marked:
            self._marked.add(key)
            self.marks.append(PhaseMark(t_s=t_s, label=label))

    def _record_evidence(self) -> None:
        """The running analysis' checks at this poll: the report's evidence-over-time plots."""
        now = time.time() - self.started
        for step in self.detail.get("steps", []):
            phase = str(step.get("phase") or "step")
            label = f"{step['weight']}%" if phase == "step" else phase
            key = f"{phase}-{step['index']}"
            self._mark(key, (step.get("started_at") or self.started) - self.started, label)
            verdict = step.get("verdict") or {}
            if step.get("status") != "running":  # a finished analysis: its final look, once
                if key + "-final" in self._marked:
                    continue
                self._marked.add(key + "-final")
            for check in verdict.get("checks") or []:
                if check.get("worse_estimate") is None or check.get("kind") not in METRIC_KINDS:
                    continue
                self._mark(key + "-warm", now, f"{label}: warm-up over")
                self.evidence.append(
                    EvidencePoint(
                        t_s=now,
                        phase=label,
                        metric=str(check["metric"]),
                        kind=str(check.get("kind")),
                        estimate=check.get("worse_estimate"),
                        lower=check.get("worse_lower"),
                        upper=check.get("worse_upper"),
                        tolerance=check.get("tolerance"),
                        alternative=check.get("alternative"),
                    )
                )

    def _sample(self) -> None:
        baseline = str(self.detail.get("baseline_version", ""))
        try:
            obs = self.metrics.observe(MODEL, baseline, self.outcome.canary_version, since=self.started)
        except MetricsError:
            return
        self.timeline.append(
            TimePoint(
                t_s=time.time() - self.started,
                weight=int(self.detail.get("weight") or 0),
                baseline_requests=obs.baseline.requests,
                baseline_errors=obs.baseline.errors,
                canary_requests=obs.canary.requests,
                canary_errors=obs.canary.errors,
            )
        )
        self.latency = (obs.baseline.latency_s, obs.canary.latency_s)

    @property
    def finished(self) -> bool:
        return self.detail.get("phase") in TERMINAL

    def view(self) -> Group:
        d = self.detail
        elapsed = time.time() - self.started
        head = Text.assemble(
            (f"{self.outcome.title}", "bold"),
            f"  rollout {self.outcome.rollout_id}  ",
            (f"{d.get('phase', 'waiting')}", "cyan"),
            f"  step {((d.get('step_index') or 0) + 1) if d.get('step_index') is not None else '-'}",
            f"  weight {d.get('weight', 0)}%  {elapsed:5.0f}s",
        )
        table = Table(show_header=True, header_style="bold", expand=False, box=None, pad_edge=False)
        for col in ("step", "weight", "status", "metric", "verdict", "why"):
            table.add_column(col)
        for step in d.get("steps", []):
            verdict = step.get("verdict") or {}
            checks = verdict.get("checks") or [{}]
            for i, check in enumerate(checks):
                colour = {"pass": "green", "fail": "red"}.get(check.get("verdict", ""), "yellow")
                table.add_row(
                    str(step["index"] + 1) if i == 0 else "",
                    f"{step['weight']}%" if i == 0 else "",
                    step.get("status", "") if i == 0 else "",
                    check.get("metric", "…"),
                    Text(check.get("verdict", "…"), style=colour),
                    check.get("reason", ""),
                )
        waiting = d.get("waiting_reason")
        traffic = self.env.load.stats if self.env.load else None
        foot = Text(
            (f"waiting: {waiting}\n" if waiting else "")
            + (
                f"load: {traffic.ok} ok, {traffic.failed} failed, {traffic.shed} shed, "
                f"by version {traffic.by_version}"
                if traffic
                else ""
            )
        )
        return Group(head, table, foot)

    def close(self) -> None:
        self._http.close()

    def report(self, commits: list[str]) -> ReportData:
        d = self.detail
        steps = []
        for step in d.get("steps", []):
            started = (step.get("started_at") or self.started) - self.started
            verdict = Verdict.model_validate(step["verdict"]) if step.get("verdict") else None
            ended = started + verdict.decided_at_s if verdict and verdict.decided_at_s is not None else None
            steps.append(StepRecord(weight=step["weight"], started_s=started, ended_s=ended, verdict=verdict))
        spec = RolloutSpec(
            rollout_id=d["id"],
            model=d["model"],
            baseline_version=d["baseline_version"],
            canary_version=d["canary_version"],
            policy=d.get("policy", "default"),
            environment=d.get("environment", "production"),
        )
        return ReportData(
            spec=spec,
            decision=DECISION_OF_PHASE.get(d.get("phase", ""), d.get("phase", "")),
            reason=d.get("reason", ""),
            duration_s=(d.get("finished_at") or time.time()) - self.started,
            steps=steps,
            timeline=self.timeline,
            baseline_latency=self.latency[0],
            canary_latency=self.latency[1],
            commits=commits,
            evidence=self.evidence,
            marks=self.marks,
        )


def gitops_log(remote: Path) -> list[str]:
    out = subprocess.run(
        ["git", "--git-dir", str(remote), "log", "--reverse", "--format=%h %s", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.splitlines()


def run_rollout(
    env: DemoEnvironment,
    metrics: MetricsSource,
    console: Console,
    title: str,
    variant: Variant,
    expected: str,
    timeout_s: float,
) -> RolloutOutcome:
    assert env.mlflow is not None and env.remote is not None
    console.print(f"[bold]{title}[/bold]: registering a {variant} copy of the model")
    version = env.register(variant, seed=int(time.time()) % 1000)
    outcome = RolloutOutcome(title=title, canary_version=version, expected=expected)
    watcher = RolloutWatcher(env, metrics, outcome)
    console.print(f"setting alias [bold]challenger[/bold] on {MODEL} version {version} in MLflow")
    MlflowClient(env.mlflow.tracking_uri).set_registered_model_alias(MODEL, "challenger", version)
    try:
        outcome.rollout_id = watcher.find_rollout()
        deadline = time.monotonic() + timeout_s
        with Live(watcher.view(), console=console, refresh_per_second=2, transient=False) as live:
            while not watcher.finished and time.monotonic() < deadline:
                watcher.poll()
                live.update(watcher.view())
                time.sleep(1.0)
        console.print()
        outcome.phase = str(watcher.detail.get("phase", "unknown"))
        outcome.decision = DECISION_OF_PHASE.get(outcome.phase, outcome.phase)
        outcome.reason = str(watcher.detail.get("reason", ""))
        if not watcher.finished:
            outcome.reason = f"no decision within {timeout_s:.0f}s ({watcher.detail.get('waiting_reason')})"
        outcome.seconds = time.time() - watcher.started
        outcome.detail = watcher.detail
        time.sleep(2.0)  # let the GitOps sync apply the final commit before the next rollout
        report = render_html(watcher.report(gitops_log(env.remote)))
        outcome.report = env.reports / f"{outcome.rollout_id}.html"
        outcome.report.write_text(report)
    finally:
        watcher.close()
    return outcome
