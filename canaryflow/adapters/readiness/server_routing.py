"""`LiveTraffic` without a cluster: the split the serving front applies now, from its own /metrics.

canaryflow's inference server exports `canaryflow_routing_weight{model, version}` as it applies a
routing file (the GitOps sync writes it from each commit), and the local mesh's readiness endpoint
(HAProxy in front of third-party servers) exports the weights it gave the proxy. Read back, they let
the wait-ready step hold a traffic step until the front serves the committed split, as the routers'
reader does on a cluster: a step judged while the old split still ran fails its sample-ratio check.
A front that exports no such gauge for the model cannot confirm a split: TrafficUnreadable, naming
what is missing.
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from canaryflow.kernel.contracts.metrics import MODEL_LABEL, ROUTING_WEIGHT, VERSION_LABEL
from canaryflow.kernel.ports import TrafficUnreadable
from canaryflow.kernel.types import RolloutSpec


class ServerRouting:
    def __init__(self, base_url: str, timeout_s: float = 2.0) -> None:
        self.url = base_url.rstrip("/") + "/metrics"
        self.timeout_s = timeout_s

    def weights(self, spec: RolloutSpec) -> dict[str, int]:
        try:
            response = httpx.get(self.url, timeout=self.timeout_s)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise TrafficUnreadable(f"{self.url}: {exc}") from exc
        split: dict[str, int] = {}
        try:
            for family in text_string_to_metric_families(response.text):
                if family.name != ROUTING_WEIGHT:
                    continue
                for sample in family.samples:
                    if sample.labels.get(MODEL_LABEL) == spec.model and VERSION_LABEL in sample.labels:
                        split[sample.labels[VERSION_LABEL]] = round(sample.value)
        except ValueError as exc:
            raise TrafficUnreadable(f"{self.url}: not a Prometheus text page ({exc})") from exc
        if not split:
            raise TrafficUnreadable(f"{self.url} reports no {ROUTING_WEIGHT} of model {spec.model!r}")
        return split
