"""The readiness port lives in the core (`CanaryReadiness`); re-exported here for the controller."""

from canaryflow.core.ports import CanaryReadiness as Readiness
from canaryflow.core.types import ReadinessResult

__all__ = ["Readiness", "ReadinessResult"]
