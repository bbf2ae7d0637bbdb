"""Fixtures shared with the controller and GitOps tests: the controller app on a store on disk, GitOps
settings pointing at a bare remote, a rollout spec."""

from tests.controller.conftest import client, context, settings, store  # noqa: F401
from tests.gitops.conftest import make_settings, spec  # noqa: F401
