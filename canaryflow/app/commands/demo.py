"""`canaryflow demo`: a promoted and a rolled-back rollout on one machine, with real parts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Run a whole rollout on one machine (promote, then roll back).")


@app.callback(invoke_without_command=True)
def demo(
    fast: Annotated[bool, typer.Option("--fast", help="a two-minute tour: shorter steps, more load")] = False,
    keep: Annotated[
        bool, typer.Option("--keep", help="leave MLflow, Prometheus and the controller up afterwards")
    ] = False,
    workdir: Annotated[
        Path | None, typer.Option(help="where everything is written (default: demo-output/<time>)")
    ] = None,
    rate: Annotated[float, typer.Option(help="load in requests/s (default: 24, or 40 with --fast)")] = 0.0,
    policy: Annotated[str, typer.Option(help="rollout policy: a shipped name or a YAML path")] = "demo",
    server: Annotated[
        str,
        typer.Option(
            help="canaryflow (its own server, the default) or mlserver (Seldon MLServer, docs/servers.md)"
        ),
    ] = "canaryflow",
) -> None:
    """Start MLflow, a GitOps repo, the inference server, Prometheus and the controller; promote a good
    canary, roll back a bad one; write a report per rollout."""
    from canaryflow.app.demo.environment import DemoConfig
    from canaryflow.app.demo.run import default_workdir, run_demo
    from policies import PolicyError, load_policy

    if rate < 0:
        typer.echo("canaryflow demo: --rate: must be positive", err=True)
        raise typer.Exit(code=2)
    if server != "canaryflow":
        raise typer.Exit(code=_third_party(server, workdir, fast, rate))
    try:
        load_policy(policy)
    except PolicyError as exc:
        typer.echo(f"canaryflow demo: --policy: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    config = DemoConfig(workdir=(workdir or default_workdir()).resolve(), fast=fast, rate=rate, policy=policy)
    raise typer.Exit(code=run_demo(config, keep=keep))


def _third_party(server: str, workdir: Path | None, fast: bool, rate: float) -> int:
    """The same loop for a server canaryflow did not write (`canaryflow.app.demo.third_party`)."""
    from rich.console import Console

    from canaryflow.app.demo.run import default_workdir
    from canaryflow.app.demo.third_party import SERVERS, run_server_demo
    from canaryflow.app.local.mlserver import MLServerNotInstalled

    if server not in SERVERS:
        typer.echo(
            f"canaryflow demo: --server: {server!r} is not one of canaryflow, {', '.join(SERVERS)}", err=True
        )
        return 2
    console = Console()
    try:
        return run_server_demo(
            server,
            (workdir or default_workdir()).resolve(),
            lambda m: console.print(f"[dim]·[/dim] {m}"),
            fast=fast,
            rate=rate,
        )
    except MLServerNotInstalled as exc:
        typer.echo(f"canaryflow demo: --server: {exc}", err=True)
        return 2
    except KeyboardInterrupt:
        return 130
