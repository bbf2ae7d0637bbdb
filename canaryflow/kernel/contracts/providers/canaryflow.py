"""canaryflow's own inference server (`canaryflow serve`): the families of `contracts/metrics.py`,
labelled `model`/`version` by the server itself. The analysis reads these without templates by default
(`PrometheusSource`'s own queries); the templates serve a policy that names this provider for one
metric beside another provider."""

from __future__ import annotations

from canaryflow.kernel.contracts import metrics as names
from canaryflow.kernel.contracts.providers.base import MetricProvider, SignalQueries

_SEL = f'{names.MODEL_LABEL}="{{{{model}}}}",{names.VERSION_LABEL}="{{{{version}}}}"'
_DURATION = names.REQUEST_DURATION
_REQUESTS = names.counter_sample(names.REQUESTS)
_SHADOW = names.SHADOW_DISTANCE

PROVIDER = MetricProvider(
    name="canaryflow",
    description="canaryflow serve: canaryflow_request_duration_seconds, canaryflow_requests_total",
    signals={
        "latency": SignalQueries(
            histogram=f"sum by (le) ({_DURATION}_bucket{{{_SEL}}})", count=f"sum({_DURATION}_count{{{_SEL}}})"
        ),
        "requests": SignalQueries(
            requests=f"sum({_REQUESTS}{{{_SEL}}})", errors=f'sum({_REQUESTS}{{{_SEL},code=~"5.."}})'
        ),
        "gpu_memory": SignalQueries(value=f"max({names.GPU_MEMORY}{{{_SEL}}})"),
        "shadow_distance": SignalQueries(
            histogram=f'sum by (le) ({_SHADOW}_bucket{{{_SEL},baseline="{{{{baseline_version}}}}"}})',
            count=f'sum({_SHADOW}_count{{{_SEL},baseline="{{{{baseline_version}}}}"}})',
        ),
    },
)
