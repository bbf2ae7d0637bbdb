"""What a metric provider is: for each signal the analysis reads, PromQL templates that return one arm's
cumulative counters. Built-in providers (one file each beside this one) and a policy's `query:` escape
hatch are the same thing, so both are read, validated and judged by one code path.

A template names its parameters `{{model}}`, `{{version}}`, `{{arm}}` (`baseline` or `canary`),
`{{baseline_version}}` and `{{reasons}}` (a finish-reason metric's reasons, as a regex alternation);
PromQL never uses double braces, so the two cannot be confused. Every template must name `{{version}}`
or `{{arm}}`: otherwise both arms would read the same series and every comparison would be void.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

# The arms' target labels on series scraped from a version's own pods: the PodMonitor copies the pod
# labels `app.kubernetes.io/name` and `canaryflow.io/version` onto them under these names, which no
# producer uses itself (Triton and canaryflow already export `model`/`version` labels of their own).
ARM_MODEL_LABEL = "canaryflow_model"
ARM_VERSION_LABEL = "canaryflow_version"
POD_SELECTOR = f'{ARM_MODEL_LABEL}="{{{{model}}}}",{ARM_VERSION_LABEL}="{{{{version}}}}"'

# What the analysis reads. `latency` and `requests` also guard a step (minimum samples, sample ratio,
# the canary's first request); the others feed one metric kind each (METRIC_KINDS' `signal`).
Signal = Literal[
    "latency",
    "requests",
    "gpu_memory",
    "shadow_distance",
    "time_to_first_token",
    "time_per_output_token",
    "e2e_latency",
    "finish_reason",
]
SIGNAL_SHAPES: dict[str, Literal["histogram", "rate", "gauge"]] = {
    "latency": "histogram",
    "requests": "rate",
    "gpu_memory": "gauge",
    "shadow_distance": "histogram",
    "time_to_first_token": "histogram",
    "time_per_output_token": "histogram",
    "e2e_latency": "histogram",
    "finish_reason": "rate",
}
# Signals the step's own series carries (the metrics provider's, read once per arm): a metric of a kind
# with such a signal and no provider or query of its own is judged on the step's series.
STEP_SIGNALS = frozenset({"latency", "requests", "gpu_memory", "shadow_distance"})
PARAMETERS = ("model", "version", "arm", "baseline_version", "reasons")
ARM_PARAMETERS = ("version", "arm")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class SignalQueries:
    """PromQL templates for one signal of one arm, each returning cumulative counters (never `rate()`:
    the analysis subtracts readings itself, exactly).

    histogram kinds: `histogram` returns bucket counters by `le` (`sum by (le) (x_bucket{...})`), `count`
    the number of observations (default: the `+Inf` bucket); `unit_s` turns `le` into seconds (Istio's
    milliseconds: 0.001). rate kinds: `requests` counts every event, `errors` the bad ones. gauges:
    `value`.
    """

    histogram: str | None = None
    count: str | None = None
    requests: str | None = None
    errors: str | None = None
    value: str | None = None
    unit_s: float = 1.0

    def templates(self) -> dict[str, str]:
        names = ("histogram", "count", "requests", "errors", "value")
        return {name: text for name in names if (text := getattr(self, name)) is not None}


@dataclass(frozen=True)
class Provenance:
    """Where a built-in family's names, labels and buckets were read: the producer's repository, the
    commit and the files (the exposition fixtures under tests/ are written from the same reading)."""

    repo: str
    commit: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class MetricProvider:
    """A built-in family: its name (what a policy's `provider:` says), its templates per signal, and
    what it needs from the deployment to tell the arms apart."""

    name: str
    description: str
    signals: Mapping[str, SignalQueries]
    provenance: tuple[Provenance, ...] = field(default_factory=tuple)


def template_parameters(template: str) -> list[str]:
    return [m.group(1) for m in _PLACEHOLDER.finditer(template)]


def check_template(template: str) -> None:
    """ValueError when `template` names an unknown parameter or neither `{{version}}` nor `{{arm}}`."""
    names = template_parameters(template)
    unknown = sorted({n for n in names if n not in PARAMETERS})
    if unknown:
        raise ValueError(f"unknown parameter {{{{{unknown[0]}}}}} (known: {', '.join(PARAMETERS)})")
    if not any(n in ARM_PARAMETERS for n in names):
        raise ValueError(
            "the template names neither {{version}} nor {{arm}}: both arms would read the same series"
        )


def render(template: str, values: Mapping[str, str]) -> str:
    """The template with its parameters filled in, each escaped for a PromQL double-quoted string."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(f"parameter {{{{{name}}}}} has no value here")
        return values[name].replace("\\", "\\\\").replace('"', '\\"')

    return _PLACEHOLDER.sub(value, template)
