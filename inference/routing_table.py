"""Weighted routing between the versions of one model, optionally sticky by a request header.

A `RoutingTable` is immutable: a routing change builds a new one and swaps the reference, so a request
sees either the old split or the new one, never a half-applied mix. Sticky keys hash to a fixed point
in [0, 100), so a client keeps its version across requests and across worker processes, and moves
only when the weights move past its point.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from dataclasses import dataclass

from canaryflow.kernel.contracts.routing import RoutingConfig


def sticky_point(key: str) -> float:
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100.0


@dataclass(frozen=True)
class RoutingTable:
    config: RoutingConfig
    _bounds: tuple[float, ...]
    _versions: tuple[str, ...]

    @classmethod
    def from_config(cls, config: RoutingConfig) -> RoutingTable:
        bounds: list[float] = []
        versions: list[str] = []
        total = 0
        for routed in config.versions:
            if routed.weight == 0:
                continue
            total += routed.weight
            bounds.append(float(total))
            versions.append(routed.version)
        return cls(config, tuple(bounds), tuple(versions))

    @property
    def model(self) -> str:
        return self.config.model

    def choose(self, sticky_key: str | None = None, rng: random.Random | None = None) -> str:
        point = sticky_point(sticky_key) if sticky_key else (rng or random).random() * 100.0
        return self._versions[min(bisect.bisect_right(self._bounds, point), len(self._versions) - 1)]

    def role_of(self, version: str) -> str | None:
        for routed in self.config.versions:
            if routed.version == version:
                return routed.role
        return None

    def version_with_role(self, role: str) -> str | None:
        for routed in self.config.versions:
            if routed.role == role:
                return routed.version
        return None
