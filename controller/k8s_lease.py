"""Leadership by a Kubernetes `coordination.k8s.io/v1` Lease, as client-go's leader election takes one.

In a cluster the API server is the arbiter every replica already trusts: the Lease
(`spec.holderIdentity`, `leaseDurationSeconds`, `acquireTime`, `renewTime`, `leaseTransitions`) is
read, and written back with its `metadata.resourceVersion`, so of two replicas writing at once one gets
409 Conflict. As in client-go, expiry is judged on this process's clock: a lease held by another is
taken only once `leaseDurationSeconds` passed since this process *saw* its record last change (no
trust in the other's clock). The Lease says who should lead; the fence row in the shared database
(controller/leadership.py) still says who may write, claimed once the Lease is won, so a replica that
lost the Lease in a partition cannot commit either.

Needs RBAC to get, create and update `leases` in its namespace (the install manifests grant it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from canaryflow.adapters.database import Database
from controller.leadership import LeaseElector


def _now() -> datetime:
    return datetime.now(UTC)


class KubernetesLease(LeaseElector):
    def __init__(
        self,
        db: Database,
        api: client.ApiClient,
        namespace: str,
        *,
        name: str = "canaryflow-controller",
        identity: str | None = None,
        ttl_s: float = 15.0,
        renew_s: float = 3.0,
        on_change: Callable[[bool], None] | None = None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(db, name=name, identity=identity, ttl_s=ttl_s, renew_s=renew_s, on_change=on_change)
        self._api = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.clock = monotonic or self.clock
        self._observed: tuple[Any, ...] | None = None  # (holder, renewTime, resourceVersion) last seen
        self._observed_at = 0.0

    def _spec(self, acquire: datetime, transitions: int) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=math.ceil(self.ttl_s),
            acquire_time=acquire,
            renew_time=_now(),
            lease_transitions=transitions,
        )

    def _acquire(self) -> tuple[float, int | None] | None:
        started = self.clock()
        try:
            lease: Any = self._api.read_namespaced_lease(self.name, self.namespace, _request_timeout=5)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(_now(), 0),
            )
            try:
                self._api.create_namespaced_lease(self.namespace, body, _request_timeout=5)
            except ApiException as exc2:
                if exc2.status == 409:  # another replica created it first
                    return None
                raise
            return self._won(started)
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity or ""
        seen = (holder, spec.renew_time, lease.metadata.resource_version)
        if seen != self._observed:
            self._observed, self._observed_at = seen, started
        duration = spec.lease_duration_seconds or math.ceil(self.ttl_s)
        if holder and holder != self.identity and started < self._observed_at + duration:
            return None  # held by another, renewed within its duration as far as this process saw
        mine = holder == self.identity
        transitions = (spec.lease_transitions or 0) + (0 if mine or not holder else 1)
        lease.spec = self._spec(spec.acquire_time if mine and spec.acquire_time else _now(), transitions)
        try:
            self._api.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=5)
        except ApiException as exc:
            if exc.status == 409:  # another replica wrote it since it was read
                return None
            raise
        if mine and self.fence.held_epoch is not None:
            return started, None
        return self._won(started)

    def _won(self, started: float) -> tuple[float, int | None]:
        # Counted from before the write (others time it from when they saw it): the fence claim may
        # wait for the old leader's push in flight.
        return started, self._claim_fence()

    def _let_go(self) -> None:
        """Empties the holder (client-go's ReleaseOnCancel): another replica takes it at its next try."""
        lease: Any = self._api.read_namespaced_lease(self.name, self.namespace, _request_timeout=5)
        if lease.spec is None or lease.spec.holder_identity != self.identity:
            return
        lease.spec.holder_identity = None
        lease.spec.lease_duration_seconds = 1
        self._api.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=5)
