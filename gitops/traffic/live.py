"""`LiveTraffic` through the routers: the split a rollout's model is served with now, on the cluster.

Which router reads it depends on the rollout (its policy's traffic mode), so the reader takes the same
`traffic_mode_for` the GitOps repo renders with; errors of the Kubernetes API become TrafficUnreadable.
"""

from __future__ import annotations

from collections.abc import Callable

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from canaryflow.kernel.contracts.traffic import TrafficMode
from canaryflow.kernel.ports import TrafficUnreadable
from canaryflow.kernel.types import RolloutSpec
from gitops.traffic import traffic_router
from gitops.traffic.base import ClusterReader


class RouterTraffic:
    def __init__(
        self, cluster: ClusterReader, namespace: str, traffic_mode_for: Callable[[RolloutSpec], TrafficMode]
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.traffic_mode_for = traffic_mode_for

    def weights(self, spec: RolloutSpec) -> dict[str, int]:
        mode = self.traffic_mode_for(spec)
        try:
            return traffic_router(mode).live_weights(self.cluster, self.namespace, spec.model)
        except ApiException as exc:
            raise TrafficUnreadable(
                f"{mode} router: Kubernetes API answered {exc.status} {exc.reason}"
            ) from exc
        except (HTTPError, OSError) as exc:
            raise TrafficUnreadable(f"{mode} router: Kubernetes API unreachable ({exc})") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise TrafficUnreadable(f"{mode} router: unexpected object on the cluster ({exc!r})") from exc
