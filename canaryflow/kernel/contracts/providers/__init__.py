"""Metric providers: where each arm's numbers come from. One file per built-in family, one line below.

A policy names a provider for all its metrics (`metrics_provider`) or per metric (`metrics[i].provider`),
or writes its own PromQL (`metrics[i].query`, the same `SignalQueries` shape). The adapter
(`canaryflow.adapters.metrics.providers`) renders the templates for each arm and reads them through
Prometheus; the analysis judges what they return with the same statistics whatever the producer.
Each built-in family's names, labels and buckets were read from the producer's source at the commit
its `provenance` records; tests/metrics_providers/ holds exposition fixtures written from that reading.
"""

from __future__ import annotations

from canaryflow.kernel.contracts.providers import canaryflow, istio, knative, mlserver, tei, triton, vllm
from canaryflow.kernel.contracts.providers.base import (
    ARM_MODEL_LABEL,
    ARM_VERSION_LABEL,
    PARAMETERS,
    SIGNAL_SHAPES,
    STEP_SIGNALS,
    MetricProvider,
    Provenance,
    SignalQueries,
    check_template,
    render,
    template_parameters,
)
from canaryflow.kernel.contracts.serving import DEFAULT_SERVING_PROFILE, SERVING_PROFILES, ServingProfileName

METRIC_PROVIDERS: dict[str, MetricProvider] = {
    provider.name: provider
    for provider in (
        canaryflow.PROVIDER,
        vllm.PROVIDER,
        triton.PROVIDER,
        tei.PROVIDER,
        mlserver.PROVIDER,
        istio.PROVIDER,
        knative.PROVIDER,
    )
}
DEFAULT_PROVIDER = "canaryflow"

# The provider a serving profile's metrics come from when the policy names none. A KServe runtime's
# own metrics differ per runtime, but its queue-proxy sees every request; a `custom` server exports
# nothing canaryflow knows, so its policy names a mesh family or writes a query.
PROFILE_PROVIDERS: dict[ServingProfileName, str | None] = {
    "canaryflow": "canaryflow",
    "vllm": "vllm",
    "triton": "triton",
    "tei": "tei",
    "mlserver": "mlserver",
    "kserve-runtime": "knative",
    "custom": None,
}
if set(PROFILE_PROVIDERS) != set(SERVING_PROFILES):  # a profile added without its default provider
    raise RuntimeError(
        f"profile providers {sorted(PROFILE_PROVIDERS)} do not match {sorted(SERVING_PROFILES)}"
    )
if PROFILE_PROVIDERS[DEFAULT_SERVING_PROFILE] != DEFAULT_PROVIDER:
    raise RuntimeError("the default serving profile's provider must be the default provider")
for _provider in METRIC_PROVIDERS.values():  # a step's guards count its requests, its latency kind reads one
    if (
        not {"latency", "requests"} <= set(_provider.signals)
        or _provider.signals["requests"].requests is None
    ):
        raise RuntimeError(f"metric provider {_provider.name}: needs the latency and requests signals")
for _name, _template in (
    (f"{p.name}.{signal}.{field}", text)
    for p in METRIC_PROVIDERS.values()
    for signal, queries in p.signals.items()
    for field, text in queries.templates().items()
):
    try:  # a built-in template is held to the rule a policy's query is
        check_template(_template)
    except ValueError as _exc:
        raise RuntimeError(f"metric provider {_name}: {_exc}") from None


def metric_provider(name: str) -> MetricProvider:
    """The registered provider, or a ValueError listing the providers there are."""
    try:
        return METRIC_PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(METRIC_PROVIDERS))
        raise ValueError(f"unknown metric provider {name!r} (known: {known})") from None


def profile_provider(profile: ServingProfileName) -> str | None:
    """The provider a serving profile's metrics come from by default (None: the policy must name one)."""
    return PROFILE_PROVIDERS[profile]


__all__ = [
    "ARM_MODEL_LABEL",
    "ARM_VERSION_LABEL",
    "DEFAULT_PROVIDER",
    "METRIC_PROVIDERS",
    "PARAMETERS",
    "PROFILE_PROVIDERS",
    "SIGNAL_SHAPES",
    "STEP_SIGNALS",
    "MetricProvider",
    "Provenance",
    "SignalQueries",
    "check_template",
    "metric_provider",
    "profile_provider",
    "render",
    "template_parameters",
]
