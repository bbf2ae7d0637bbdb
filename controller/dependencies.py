"""Which outside dependency a failure is waiting on: MLflow, Prometheus, the git remote, GitHub, Argo.

An outage must read as "waiting for <dependency>" in `/rollouts` and `/metrics`, not as a stuck rollout
or a bare traceback: the reconciler names the dependency of a failed call, and the metrics collector
counts the active rollouts whose waiting reason names one. Adapter errors are matched by type where
the controller sees the exception, and by the words every adapter puts in its messages where only a
workflow node's message reaches the controller.
"""

from __future__ import annotations

import re

from canaryflow.adapters.registry.mlflow import RegistryError
from canaryflow.kernel.ports import MetricsError
from gitops.gitcli import GitError
from gitops.pullrequest import ApprovalError

DEPENDENCIES = ("mlflow", "prometheus", "git", "github", "argo", "kubernetes")

_BY_TYPE: tuple[tuple[type[BaseException], str], ...] = (
    (GitError, "git"),
    (ApprovalError, "github"),
    (MetricsError, "prometheus"),
    (RegistryError, "mlflow"),
)
# Checked in order: a message naming the git remote and GitHub (a push to github.com) is about git.
_BY_WORDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"\bgit (remote|push|fetch|ls-remote|commit|add|checkout)\b|index\.lock|working clone"),
        "git",
    ),
    (re.compile(r"GitHub|pull request", re.IGNORECASE), "github"),
    (re.compile(r"Prometheus|scrape|metrics (source|backend)", re.IGNORECASE), "prometheus"),
    (re.compile(r"MLflow|model registry|registry_tracking_uri|API request to", re.IGNORECASE), "mlflow"),
    (re.compile(r"\bArgo\b", re.IGNORECASE), "argo"),
    (re.compile(r"Kubernetes|Deployment .* not ready", re.IGNORECASE), "kubernetes"),
)


def dependency_of(error: BaseException | str | None) -> str | None:
    """The dependency a failure (an exception, or a waiting reason) is about; None if none is named."""
    if error is None:
        return None
    if isinstance(error, BaseException):
        for kind, name in _BY_TYPE:
            if isinstance(error, kind):
                return name
        module = type(error).__module__
        if module.startswith(("mlflow", "requests", "urllib3")):
            return "mlflow"
        if module.startswith("workflows.argo"):
            return "argo"
        error = str(error)
    for pattern, name in _BY_WORDS:
        if pattern.search(error):
            return name
    return None


def waiting_reason(error: BaseException) -> str:
    """One line for /rollouts: `waiting for <dependency>: <error>` (retried every tick until it works)."""
    text = " ".join(str(error).split())[:300] or type(error).__name__
    dependency = dependency_of(error)
    return f"waiting for {dependency}: {text}" if dependency else f"controller error: {text}"
