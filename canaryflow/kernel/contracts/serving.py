"""Serving profiles: which inference server a version's workload runs. One list, read by the policy and
trigger models (which profile a rollout renders), the manifest renderer (`gitops`: the container, how it
gets the registered version's artifacts, its port, probes and metrics endpoint) and the metric providers
(which built-in metric families the analysis reads for that server)."""

from __future__ import annotations

from typing import Literal, get_args

ServingProfileName = Literal["canaryflow", "vllm", "triton", "tei", "mlserver", "kserve-runtime", "custom"]
SERVING_PROFILES: tuple[str, ...] = get_args(ServingProfileName)
DEFAULT_SERVING_PROFILE: ServingProfileName = "canaryflow"
