"""Leadership by a Kubernetes Lease (controller/k8s_lease.py) through the official client, against a
local double of the API server's Lease resource (tests/support/lease_api.py), fenced in a real
PostgreSQL database."""

from __future__ import annotations

from datetime import datetime

import pytest
from kubernetes import client

from canaryflow.adapters.database import Deposed, open_database
from controller.k8s_lease import KubernetesLease
from controller.rollout.store import RolloutStore
from tests.support.lease_api import LeaseApiServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api():
    server = LeaseApiServer()
    configuration = client.Configuration()
    configuration.host = server.url
    yield server, client.ApiClient(configuration)
    server.close()


def _replica(url, api_client, name, clock):
    store = RolloutStore(open_database(url))
    lease = KubernetesLease(
        store.db, api_client, "canaryflow", identity=name, ttl_s=10, renew_s=2, monotonic=clock
    )
    return lease, store


def test_the_lease_object_elects_one_and_a_silent_holder_is_replaced_after_its_duration(postgres_url, api):
    server, api_client = api
    clock = Clock()
    a, store_a = _replica(postgres_url, api_client, "a", clock)
    b, store_b = _replica(postgres_url, api_client, "b", clock)
    assert a.attempt() and not b.attempt()
    lease = server.leases[("canaryflow", "canaryflow-controller")]
    assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseDurationSeconds"] == 10
    renewed = datetime.fromisoformat(lease["spec"]["renewTime"])  # MicroTime: RFC 3339, microseconds
    assert (
        lease["spec"]["leaseTransitions"] == 0
        and renewed.tzinfo is not None
        and "." in lease["spec"]["renewTime"]
    )
    clock.now += 5
    assert a.attempt() and not b.attempt()  # renewed: b saw the record change, so it waits again
    clock.now += 9
    assert not b.attempt()  # 9 s since b saw the last renewal: not yet
    clock.now += 2  # a stopped renewing 11 s ago (b's clock)
    assert b.attempt() and b.epoch() == 2
    lease = server.leases[("canaryflow", "canaryflow-controller")]
    assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1
    a._valid_until = float("inf")  # a, cut off, still believes it leads: the fence refuses its writes
    with pytest.raises(Deposed):
        store_a.update("any", reason="x")
    store_b.update("any", reason="x")


def test_a_write_race_on_the_lease_is_lost_by_one_with_409(postgres_url, api):
    server, api_client = api
    clock = Clock()
    a, _ = _replica(postgres_url, api_client, "a", clock)
    b, _ = _replica(postgres_url, api_client, "b", clock)
    assert a.attempt()
    real = server.answer

    def a_renews_first(method, namespace, name, request):  # a's renewal lands between b's read and write
        if method == "PUT" and request.headers.get("User-Agent", "") and not getattr(server, "raced", False):
            server.raced = True
            current = server.leases[(namespace, name)]
            server._store((namespace, name), current)
        return real(method, namespace, name, request)

    clock.now += 11
    server.answer = a_renews_first
    assert not b.attempt()  # 409 Conflict: the resourceVersion it read is stale
    assert server.leases[("canaryflow", "canaryflow-controller")]["spec"]["holderIdentity"] == "a"


def test_a_clean_stop_empties_the_holder(postgres_url, api):
    server, api_client = api
    clock = Clock()
    a, _ = _replica(postgres_url, api_client, "a", clock)
    b, _ = _replica(postgres_url, api_client, "b", clock)
    assert a.attempt()
    a.release()
    assert "holderIdentity" not in server.leases[("canaryflow", "canaryflow-controller")]["spec"]
    assert b.attempt() and b.epoch() == 2
