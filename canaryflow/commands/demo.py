"""`canaryflow demo`: placeholder until its issue lands."""

from __future__ import annotations

import typer

from canaryflow.commands._pending import not_built

app = typer.Typer(help="demo commands.", no_args_is_help=True)


@app.command("pending")
def pending() -> None:
    """Not built yet."""
    not_built("canaryflow demo")
