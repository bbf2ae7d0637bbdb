"""`canaryflow install`: what a cluster needs to run canaryflow, rendered as a Kustomize tree.

Pure functions of `InstallOptions` (no I/O but `layout.write`): the controller's Deployment and its
companions, the Argo pieces of `workflows.argo.install`, alert rules and dashboards.
"""

from canaryflow.app.install.layout import render, write
from canaryflow.app.install.options import InstallOptions

__all__ = ["InstallOptions", "render", "write"]
