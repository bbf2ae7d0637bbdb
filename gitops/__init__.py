"""Adapter layer: GitOps, the rollout's traffic state as manifests committed to git.

Renders a model's traffic state as Kustomize manifests, validates them, commits them to git:

- `render` (pure) turns a `RenderRequest` into the files of `apps/<model>/base`,
  `apps/<model>/overlays/<env>` and `argocd/`; `traffic/` holds one file per traffic mode.
- `validate` refuses any document that the Kubernetes or CRD schemas would refuse.
- `git.GitRepo` implements the `GitOpsRepo` port; `pullrequest.GitHubApproval` the `ApprovalGate`;
  `factory` builds both from `GitOpsSettings`.
- `routing_from_checkout` reads the routing state (versions, URIs, weights) back from a checkout.
"""

from gitops.files import routing_from_checkout, write_rendering
from gitops.gitops_settings import GitOpsSettings, RenderOptions
from gitops.model import Rendering, RenderRequest
from gitops.render import render, routing_config

__all__ = [
    "GitOpsSettings",
    "RenderOptions",
    "RenderRequest",
    "Rendering",
    "render",
    "routing_config",
    "routing_from_checkout",
    "write_rendering",
]
