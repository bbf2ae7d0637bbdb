"""Network helpers for tests: loopback only."""

from canaryflow.app.local.process import free_port, http_ok

__all__ = ["free_port", "http_ok"]
