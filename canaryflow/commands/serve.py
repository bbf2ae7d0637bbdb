"""`canaryflow serve`: placeholder until the inference issue lands."""

from __future__ import annotations

from canaryflow.commands._pending import not_built


def serve() -> None:
    """Run the inference server (not built yet)."""
    not_built("canaryflow serve")
