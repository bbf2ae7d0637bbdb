"""A command that exists in the CLI but whose work is not built yet: says so and exits 2."""

from __future__ import annotations

import typer


def not_built(what: str) -> None:
    typer.echo(f"canaryflow: {what} is not built yet", err=True)
    raise typer.Exit(code=2)
