"""The controller fixtures (store on disk, app wired to it) and the live services' fixtures."""

from tests.controller.conftest import client, context, settings, store  # noqa: F401
