"""Traffic modes: how a canary step's weight reaches requests. One list, read by the policy schema,
the GitOps settings and the router registry (`gitops.traffic`), which must cover every mode here."""

from __future__ import annotations

from typing import Literal, get_args

TrafficMode = Literal["httproute", "configmap", "kserve-serverless", "kserve-raw", "istio"]
TRAFFIC_MODES: tuple[str, ...] = get_args(TrafficMode)
DEFAULT_TRAFFIC_MODE: TrafficMode = "configmap"
