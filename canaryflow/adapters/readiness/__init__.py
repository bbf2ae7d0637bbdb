"""Is the canary ready to be analysed? A Kubernetes Deployment's status, or the inference server's /ready."""

from canaryflow.adapters.readiness.base import Readiness, ReadinessResult
from canaryflow.adapters.readiness.factory import readiness_from_settings

__all__ = ["Readiness", "ReadinessResult", "readiness_from_settings"]
