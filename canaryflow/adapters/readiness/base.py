"""The readiness port lives in the core (`CanaryReadiness`); re-exported here for the controller."""

from canaryflow.kernel.ports import CanaryReadiness as Readiness
from canaryflow.kernel.types import ReadinessResult

__all__ = ["Readiness", "ReadinessResult"]
