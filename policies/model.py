"""The rollout policy: what a canary must show before it gets more traffic, and when to give up.

A policy is data (YAML) validated here; the analysis engine (`canaryflow.kernel.analysis`) reads it and
nothing else. Fields other parts rely on: `steps[i].weight/min_duration_s/min_samples`,
`traffic_mode`, `serving` (`canaryflow.kernel.contracts.serving_config`), `approval.required`,
`max_duration_s`.

Each metric states two thresholds, because a sequential test can only promise error rates at two
points: `tolerance` is how much worse the canary may be before rolling back is right (a canary that
is no worse than this is rolled back with probability at most `error_budget.false_rollback`), and
`alternative` is how much worse it must be before promoting is wrong (such a canary is promoted with
probability at most `error_budget.false_promote`). Between the two either decision is acceptable;
that gap is what lets the engine stop early in both directions.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from canaryflow.kernel.analysis.kinds import metric_kind
from canaryflow.kernel.contracts.providers import (
    DEFAULT_PROVIDER,
    SIGNAL_SHAPES,
    STEP_SIGNALS,
    SignalQueries,
    check_template,
    metric_provider,
)
from canaryflow.kernel.contracts.serving_config import ServingConfig
from canaryflow.kernel.contracts.traffic import DEFAULT_TRAFFIC_MODE, TrafficMode

# Metric kinds come from the kernel's table (`canaryflow.kernel.analysis.kinds.METRIC_KINDS`): a kind
# missing there is refused here, when the policy loads, and what a kind is (relative, a difference or
# a level; statistical; with quantiles) is read from its entry, never spelled out again.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrafficStep(_Strict):
    """One traffic weight the canary holds until the analysis decides (or its time runs out)."""

    weight: int = Field(ge=1, le=100, description="percent of requests sent to the canary")
    min_duration_s: float = Field(default=60.0, ge=0)
    min_samples: int = Field(default=200, ge=0, description="canary requests needed before deciding")
    warmup_s: float = Field(
        default=0.0, ge=0, description="left out of the analysis at the start of the step (see warmup_from)"
    )


class ApprovalPolicy(_Strict):
    """Whether promotion waits for a pull-request approval, and on which environments."""

    required: bool = False
    environments: list[str] = Field(default_factory=lambda: ["production"])
    timeout_s: float = Field(default=24 * 3600.0, gt=0)


class QueryTemplate(_Strict):
    """A metric's own PromQL (the `query:` escape hatch, like Flagger's MetricTemplate or Argo Rollouts'
    AnalysisTemplate): templates with `{{model}}`, `{{version}}`, `{{arm}}`, `{{baseline_version}}`,
    `{{reasons}}`, each returning cumulative counters for one arm. A histogram kind needs `histogram`
    (bucket counters by `le`; `count` optional, `unit_s` turns `le` into seconds), a rate kind
    `requests` and `errors`, a gauge `value`."""

    histogram: str | None = Field(default=None, min_length=1)
    count: str | None = Field(default=None, min_length=1)
    requests: str | None = Field(default=None, min_length=1)
    errors: str | None = Field(default=None, min_length=1)
    value: str | None = Field(default=None, min_length=1)
    unit_s: float = Field(default=1.0, gt=0, description="seconds per unit of `le` (0.001 for milliseconds)")

    @model_validator(mode="after")
    def _templates_well_formed(self) -> QueryTemplate:
        for name in ("histogram", "count", "requests", "errors", "value"):
            text = getattr(self, name)
            if text is not None:
                try:
                    check_template(text)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return self

    def queries(self) -> SignalQueries:
        return SignalQueries(
            histogram=self.histogram,
            count=self.count,
            requests=self.requests,
            errors=self.errors,
            value=self.value,
            unit_s=self.unit_s,
        )


_SHAPE_FIELDS = {"histogram": ("histogram",), "rate": ("requests", "errors"), "gauge": ("value",)}


class MetricPolicy(_Strict):
    """One metric compared between canary and baseline, with its two thresholds."""

    name: str = Field(min_length=1, pattern=r"^[a-z][a-z0-9_]*$")
    kind: str = Field(description="a kind of the kernel's table: latency, error_rate, gpu_memory, ...")
    direction: Literal["lower_is_better", "higher_is_better"] = "lower_is_better"
    quantiles: list[float] = Field(
        default_factory=list, description="latency / shadow distance: quantiles compared (0 < q < 1)"
    )
    tolerance: float = Field(ge=0, description="worse than this (relative, difference or level): roll back")
    alternative: float | None = Field(
        default=None, description="at least this much worse: promoting is an error (statistical kinds)"
    )
    required: bool = Field(default=True, description="no data for it: the step cannot pass")
    provider: str | None = Field(
        default=None,
        description="where both arms' numbers come from (default: the policy's metrics_provider)",
    )
    query: QueryTemplate | None = Field(
        default=None, description="the metric's own PromQL instead of a provider"
    )
    finish_reasons: list[str] = Field(
        default_factory=list,
        description="finish_reason: the reasons counted (vLLM: stop, length, abort, ...)",
    )

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str | None) -> str | None:
        if value is not None:
            metric_provider(value)  # raises, naming the providers there are
        return value

    @field_validator("finish_reasons")
    @classmethod
    def _reasons_named(cls, value: list[str]) -> list[str]:
        for reason in value:
            if not reason or not reason.replace("_", "").isalnum():
                raise ValueError(f"{reason!r} is not a finish reason (letters, digits, _)")
        return value

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        metric_kind(value)  # raises, naming the kinds there are
        return value

    @field_validator("quantiles")
    @classmethod
    def _quantiles_in_range(cls, value: list[float]) -> list[float]:
        for q in value:
            if not 0.0 < q < 1.0:
                raise ValueError(f"{q} is not strictly between 0 and 1")
        if len(set(value)) != len(value):
            raise ValueError(f"duplicates in {value}")
        return value

    @model_validator(mode="after")
    def _thresholds_fit_kind(self) -> MetricPolicy:
        kind = metric_kind(self.kind)
        if kind.quantiles and not self.quantiles:
            raise ValueError(f"quantiles: a {self.kind} metric needs at least one")
        if not kind.quantiles and self.quantiles:
            raise ValueError(f"quantiles: not used by a {self.kind} metric")
        if kind.statistical:
            if self.alternative is None:
                raise ValueError(f"alternative: required for a {self.kind} metric")
            if self.alternative <= self.tolerance:
                raise ValueError(
                    f"alternative: must exceed tolerance ({self.alternative} <= {self.tolerance})"
                )
        if self.kind == "error_rate" and (self.alternative or 0.0) >= 1.0:
            raise ValueError("alternative: a rate difference must be below 1")
        if kind.comparison == "level" and self.direction != "lower_is_better":
            raise ValueError(f"direction: a {self.kind} metric is a level where lower is better")
        if kind.direction is not None and self.direction != kind.direction:
            raise ValueError(f"direction: a {self.kind} metric reads {kind.direction}")
        relative = kind.comparison == "relative"
        if relative and self.direction == "higher_is_better" and self.tolerance >= 1:
            raise ValueError("tolerance: a relative decrease must be below 1")
        if (self.kind == "finish_reason") != bool(self.finish_reasons):
            raise ValueError(
                "finish_reasons: a finish_reason metric needs at least one"
                if self.kind == "finish_reason"
                else f"finish_reasons: not used by a {self.kind} metric"
            )
        if self.query is not None:
            if self.provider is not None:
                raise ValueError("query: give a provider or a query, not both")
            shape = SIGNAL_SHAPES[kind.signal]
            missing = [f for f in _SHAPE_FIELDS[shape] if getattr(self.query, f) is None]
            if missing:
                raise ValueError(f"query: a {self.kind} metric reads a {shape}: {missing[0]} is missing")
            if kind.signal == "shadow_distance":
                raise ValueError(f"query: a {self.kind} metric is read from canaryflow's own server only")
        return self

    def queries(self, default_provider: str) -> SignalQueries | None:
        """Where this metric's numbers come from: its query, or its (else the policy's) provider's
        templates for the kind's signal (None: that provider does not have them)."""
        if self.query is not None:
            return self.query.queries()
        provider = metric_provider(self.provider or default_provider)
        return provider.signals.get(metric_kind(self.kind).signal)

    @property
    def checks(self) -> list[str]:
        """Names of the checks this metric produces (one per quantile for distributions)."""
        if metric_kind(self.kind).quantiles:
            return [f"{self.name}_p{_quantile_label(q)}" for q in self.quantiles]
        return [self.name]


def _quantile_label(q: float) -> str:
    return f"{q * 100:g}".replace(".", "_")


def default_metrics() -> list[MetricPolicy]:
    """The metrics of the shipped default policy; also what a policy that names none compares."""
    return [
        MetricPolicy(name="latency", kind="latency", quantiles=[0.5, 0.95], tolerance=0.10, alternative=0.25),
        MetricPolicy(name="error_rate", kind="error_rate", tolerance=0.005, alternative=0.02),
        MetricPolicy(name="gpu_memory", kind="gpu_memory", tolerance=0.25, required=False),
        MetricPolicy(
            name="shadow_distance",
            kind="shadow_distance",
            quantiles=[0.5],
            tolerance=0.15,
            alternative=0.30,
            required=False,
        ),
    ]


class ErrorBudget(_Strict):
    """The error rates the engine promises, over a whole rollout (all steps, all metrics).

    `false_rollback` holds for a canary identical to its baseline; a canary worse than the baseline
    but still within a metric's tolerance is rolled back at most `false_rollback_at_tolerance` of
    the time (plus `false_rollback`), so a clearly bad canary need not wait for proof that it is
    beyond the tolerance, only that it is worse at all and, with that lower confidence, beyond it.
    """

    false_rollback: float = Field(default=0.01, gt=0, lt=0.5, description="rolled back although no worse")
    false_promote: float = Field(default=0.05, gt=0, lt=0.5, description="promoted although at alternative")
    false_rollback_at_tolerance: float = Field(
        default=0.10,
        gt=0,
        lt=1,
        description="rolled back although exactly at the tolerance in one metric (set it to false_rollback "
        "to extend the 1% to every canary within the tolerance, at the cost of slower rollbacks)",
    )


class SampleRatioPolicy(_Strict):
    """Sample-ratio mismatch: a canary getting far more or less than its share cannot be compared."""

    enabled: bool = True
    alpha: float = Field(default=0.001, gt=0, lt=0.5, description="rate of false alarms on a fair split")


# A policy run with another mixture prior is recorded under its name and this suffix
# ("low-traffic@prior_strength=1300"): what the thin-evidence switch may start a rollout under.
TUNED_PRIOR = "@prior_strength="


def tuned_policy_name(name: str, prior_strength: float) -> str:
    """The name that `policies.load_policy` reads back as `name` with `prior_strength`."""
    return f"{name.partition(TUNED_PRIOR)[0]}{TUNED_PRIOR}{prior_strength:g}"


class ThinEvidencePolicy(_Strict):
    """Opt-in: when the forecast says this policy cannot decide in time, run the rollout under another.

    At the rollout's start the controller reads the champion's last `history_s` of traffic (its rate,
    5xx share and latency histogram) and forecasts each step (`canaryflow.kernel.analysis.forecast`).
    When a step cannot be expected to decide within `max_duration_s`, the rollout runs under
    `switch_to` instead (its mixture prior tuned to the expected sample size, as `canaryflow analyze
    plan` recommends), recorded on the rollout and in its commits, and announced. Chosen before the
    first step from earlier traffic, so the policy (and its prior) is fixed before the canary's data:
    the confidence sequences stay anytime-valid.
    """

    switch_to: str = Field(
        min_length=1, description="the policy to run under instead: a shipped name or a YAML path"
    )
    when: Literal["forecast_exceeds_max_duration_s"] = Field(
        default="forecast_exceeds_max_duration_s",
        description="the one condition: a step's forecast time to a decision exceeds max_duration_s",
    )
    history_s: float = Field(
        default=600.0,
        gt=0,
        le=86_400,
        description="how much of the champion's traffic before the rollout the forecast reads (seconds)",
    )

    @field_validator("switch_to")
    @classmethod
    def _a_policy_name(cls, value: str) -> str:
        if "@" in value or value != value.strip():
            raise ValueError(f"a shipped policy name or a YAML path, got {value!r}")
        return value


class Policy(_Strict):
    name: str = "default"
    traffic_mode: TrafficMode = DEFAULT_TRAFFIC_MODE
    serving: ServingConfig = Field(
        default_factory=ServingConfig, description="the server each version runs (docs/servers.md)"
    )
    steps: list[TrafficStep] = Field(min_length=1)
    max_duration_s: float = Field(default=3600.0, gt=0)
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    metrics: list[MetricPolicy] = Field(default_factory=lambda: default_metrics())
    error_budget: ErrorBudget = Field(default_factory=ErrorBudget)
    sample_ratio: SampleRatioPolicy = Field(default_factory=SampleRatioPolicy)
    evaluate_every_s: float = Field(default=5.0, gt=0, description="analysis cadence (replay, live ticks)")
    min_baseline_samples: int = Field(default=200, ge=1, description="baseline requests needed to decide")
    warmup_from: Literal["step_start", "first_request"] = Field(
        default="first_request",
        description="where a step's warmup_s counts from: the step's start, or the canary's first request",
    )
    bake_s: float = Field(default=0.0, ge=0, description="after the last step passes: analysis goes on")
    watch_s: float = Field(
        default=0.0, ge=0, description="after promotion: the champion against the previous one's record"
    )
    change_window_s: float = Field(
        default=300.0, gt=0, description="window of the latest-window and trend checks (change over time)"
    )
    metrics_provider: str = Field(
        default=DEFAULT_PROVIDER,
        description="where the step's requests and latency (the guards) and, by default, every metric's "
        "numbers come from: a built-in family (canaryflow, vllm, triton, tei, mlserver, istio, knative)",
    )

    @field_validator("metrics_provider")
    @classmethod
    def _known_metrics_provider(cls, value: str) -> str:
        metric_provider(value)
        return value

    @model_validator(mode="after")
    def _providers_have_the_signals(self) -> Policy:
        for i, metric in enumerate(self.metrics):
            if metric.queries(self.metrics_provider) is None:
                name = metric.provider or self.metrics_provider
                have = ", ".join(metric_provider(name).signals)
                field = f"metrics[{i}].provider" if metric.provider else "metrics_provider"
                raise ValueError(
                    f"{field}: {name} exports no {metric_kind(metric.kind).signal} series for "
                    f"{metric.name} (it has: {have}); name another provider or write a query"
                )
        return self

    @property
    def reads_own_series(self) -> bool:
        """Whether any number comes from elsewhere than canaryflow's own server, read as today."""
        return self.metrics_provider != DEFAULT_PROVIDER or any(
            m.provider not in (None, DEFAULT_PROVIDER)
            or m.query is not None
            or metric_kind(m.kind).signal not in STEP_SIGNALS
            for m in self.metrics
        )

    prior_strength: float = Field(
        default=100.0,
        ge=10.0,
        le=1e6,
        description=(
            "weight (in requests) of the confidence sequences' mixture prior: best near a ninth of the"
            " canary requests a step is expected to decide at (`canaryflow analyze plan` suggests one)"
        ),
    )

    thin_evidence: ThinEvidencePolicy | None = Field(
        default=None,
        description="off unless set: the policy to switch to when this one cannot decide in time",
    )

    @model_validator(mode="after")
    def _switches_elsewhere(self) -> Policy:
        if self.thin_evidence is not None and self.thin_evidence.switch_to == self.name:
            raise ValueError(
                f"thin_evidence: switch_to names this policy itself ({self.name!r}); name another"
            )
        return self

    @model_validator(mode="after")
    def _weights_increase(self) -> Policy:
        weights = [s.weight for s in self.steps]
        if any(b <= a for a, b in pairwise(weights)):
            raise ValueError(f"steps: weights must strictly increase, got {weights}")
        return self

    @model_validator(mode="after")
    def _metrics_well_formed(self) -> Policy:
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metrics: duplicate names {dupes}")
        if not any(m.required and metric_kind(m.kind).statistical for m in self.metrics):
            raise ValueError("metrics: at least one required latency, error_rate or shadow_distance metric")
        return self

    @property
    def statistical_checks(self) -> int:
        """How many checks share the error budget (Bonferroni): one per quantile, one per rate."""
        return sum(len(m.checks) for m in self.metrics if metric_kind(m.kind).statistical)
