"""The `canaryflow` command: one entry point, a sub-command group per part of the system.

Every command answers `--help`, exits 0 on success and 2 on bad usage with a one-line reason.

A group's module is imported only when that group is called (or `--help` lists them all):
`canaryflow serve`, which every inference pod runs at each start, then imports its own command
only, not the analysis kernel's SciPy, the workflow steps or the GitOps renderer its siblings import
(1.4 s of the CLI's 1.9 s on the development machine; bench/inference.md, "Start-up without
transformers").
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

from canaryflow.app.commands import serve

# In the order `--help` lists them (commands, then groups): name: (module, its attribute, a Typer
# group or a command function; the group's help).
_LAZY = {
    "serve": (None, None, None),  # imported at once (below): the command a server's start waits for
    "doctor": ("doctor", "doctor", None),
    "demo": ("demo", "app", "Run a whole rollout on one machine (promote, then roll back)."),
    "controller": ("controller", "app", "Webhooks, rollout store, analysis loop."),
    "analyze": ("analyze", "app", "Canary analysis: decide offline from request logs."),
    "monitor": ("monitor", "app", "Drift monitoring: compare prediction-log windows offline."),
    "workflow": ("workflow", "app", "The rollout Workflow: render as YAML, submit to Argo."),
    "gitops": ("gitops", "app", "GitOps manifests: render, diff, commit, roll back."),
    "install": ("install", "app", "Run it in a cluster: manifests, dashboards, alert rules."),
}


class _LazyGroup(TyperGroup):
    """The top-level group: commands in the order above, each group built when first asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(_LAZY)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        module_name, attribute, help_text = _LAZY.get(cmd_name, (None, None, None))
        if cmd_name not in self.commands and module_name is not None and attribute is not None:
            target = getattr(importlib.import_module(f"canaryflow.app.commands.{module_name}"), attribute)
            holder = typer.Typer()
            if isinstance(target, typer.Typer):
                holder.add_typer(target, name=cmd_name, help=help_text)
            else:
                holder.command(cmd_name)(target)
            self.commands[cmd_name] = typer.main.get_group(holder).commands[cmd_name]
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="canaryflow",
    cls=_LazyGroup,
    help="GitOps canary rollouts of GPU inference deployments, driven by MLflow registry events.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _group() -> None:
    # A callback makes Typer build a group even though only `serve` is registered at import.
    pass


app.command("serve", help="The inference server: multi-version embedding server with canary routing.")(
    serve.serve
)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
