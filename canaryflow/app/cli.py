"""The `canaryflow` command: one entry point, a sub-command group per part of the system.

Every command answers `--help`, exits 0 on success and 2 on bad usage with a one-line reason.
"""

from __future__ import annotations

import typer

from canaryflow.app.commands import (
    analyze,
    controller,
    demo,
    doctor,
    gitops,
    install,
    monitor,
    serve,
    workflow,
)

app = typer.Typer(
    name="canaryflow",
    help="GitOps canary rollouts of GPU inference deployments, driven by MLflow registry events.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(demo.app, name="demo", help="Run a whole rollout on one machine (promote, then roll back).")
app.add_typer(controller.app, name="controller", help="Webhooks, rollout store, analysis loop.")
app.command("serve", help="The inference server: multi-version embedding server with canary routing.")(
    serve.serve
)
app.add_typer(analyze.app, name="analyze", help="Canary analysis: decide offline from request logs.")
app.add_typer(monitor.app, name="monitor", help="Drift monitoring: compare prediction-log windows offline.")
app.add_typer(workflow.app, name="workflow", help="The rollout Workflow: render as YAML, submit to Argo.")
app.add_typer(gitops.app, name="gitops", help="GitOps manifests: render, diff, commit, roll back.")
app.add_typer(install.app, name="install", help="Run it in a cluster: manifests, dashboards, alert rules.")
app.command("doctor")(doctor.doctor)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
