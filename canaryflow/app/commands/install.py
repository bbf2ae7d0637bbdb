"""`canaryflow install`: the manifests, dashboards and alert rules of canaryflow in a cluster.

`render` writes a Kustomize tree (`kubectl apply -k OUT/overlays/gpu` or `.../cpu`); `dashboards`
writes the Grafana dashboards as JSON files for an import by hand; `alerts` prints the PrometheusRule.
The tree holds references to Secrets, never their values (docs/install.md says which keys to create).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from pydantic import ValidationError

from canaryflow.app.commands.cli_shared import exit_with_error
from canaryflow.kernel.errors import first_error

app = typer.Typer(
    help="Run canaryflow in a cluster: Kustomize manifests, dashboards, alert rules.", no_args_is_help=True
)


def _fail(message: str) -> NoReturn:
    exit_with_error("install", message)


def _labels(pairs: list[str]) -> dict[str, str] | None:
    if not pairs:
        return None
    if any("=" not in pair for pair in pairs):
        _fail(f"--monitor-label: {next(p for p in pairs if '=' not in p)!r} is not KEY=VALUE")
    return dict(pair.split("=", 1) for pair in pairs)


_MONITOR_LABEL = typer.Option(
    "--monitor-label", help="KEY=VALUE your Prometheus selects ServiceMonitors and rules by (repeat)"
)


def _options(values: dict[str, Any]) -> Any:
    from canaryflow.app.install import InstallOptions

    try:
        return InstallOptions(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        _fail("--" + first_error(exc).replace("_", "-"))


@app.command("render")
def render(
    out: Annotated[Path, typer.Option(help="folder to write the Kustomize tree to")] = Path(
        "canaryflow-install"
    ),
    namespace: Annotated[
        str | None, typer.Option(help="where the controller and rollout workflows run")
    ] = None,
    with_inference: Annotated[
        bool, typer.Option(help="also the inference namespace: readiness RBAC, Argo CD app of apps")
    ] = False,
    inference_namespace: Annotated[str | None, typer.Option(help="where the model versions run")] = None,
    image: Annotated[str | None, typer.Option(help="controller and workflow-steps image")] = None,
    inference_image: Annotated[str | None, typer.Option(help="GPU inference image (gpu overlay)")] = None,
    gitops_repo: Annotated[str | None, typer.Option(help="URL of the GitOps repo rollouts commit to")] = None,
    github_repo: Annotated[str | None, typer.Option(help="owner/name: pull-request approval gate")] = None,
    webhook_host: Annotated[str | None, typer.Option(help="hostname the Gateway serves /webhooks on")] = None,
    policy: Annotated[str | None, typer.Option(help="policy of the installed WorkflowTemplate")] = None,
    monitor_label: Annotated[list[str] | None, _MONITOR_LABEL] = None,
    replicas: Annotated[
        int | None, typer.Option(help="controller replicas (>1: shared PostgreSQL, a leader by a Lease)")
    ] = None,
    shards: Annotated[int | None, typer.Option(help="models partitioned across the replicas")] = None,
) -> None:
    """Write base/ and overlays/{gpu,cpu}/; apply one overlay with `kubectl apply -k`."""
    from canaryflow.app.install import layout

    options = _options(
        {
            "namespace": namespace,
            "with_inference": with_inference,
            "inference_namespace": inference_namespace,
            "image": image,
            "inference_image": inference_image,
            "gitops_repo_url": gitops_repo,
            "github_repo": github_repo,
            "webhook_hostname": webhook_host,
            "policy": policy,
            "monitor_labels": _labels(monitor_label or []),
            "replicas": replicas,
            "shards": shards,
        }
    )
    try:
        files = layout.render(options)
    except (ValueError, OSError) as exc:  # an unknown policy name, an unreadable policy file
        _fail(f"--policy: {exc}")
    try:
        written = layout.write(files, out)
    except OSError as exc:
        _fail(f"--out: {exc}")
    for path in written:
        typer.echo(str(path))
    typer.echo(f"apply with: kubectl apply -k {out}/overlays/gpu   (or {out}/overlays/cpu)")


@app.command("dashboards")
def dashboards(
    out: Annotated[Path, typer.Option(help="folder to write one JSON file per dashboard to")] = Path("."),
) -> None:
    """Write the Grafana dashboards (rollouts, inference) as JSON models to import."""
    from canaryflow.app.install import layout
    from canaryflow.app.install.dashboards import DASHBOARDS, dashboard_json

    try:
        written = layout.write({f"{name}.json": dashboard_json(name) for name in DASHBOARDS}, out)
    except OSError as exc:
        _fail(f"--out: {exc}")
    for path in written:
        typer.echo(str(path))


@app.command("alerts")
def alerts(
    namespace: Annotated[str | None, typer.Option(help="namespace of the PrometheusRule")] = None,
    monitor_label: Annotated[list[str] | None, _MONITOR_LABEL] = None,
) -> None:
    """Print the PrometheusRule (also part of `install render`'s base)."""
    from canaryflow.app.install.alerts import prometheus_rule

    rule = prometheus_rule(_options({"namespace": namespace, "monitor_labels": _labels(monitor_label or [])}))
    typer.echo(yaml.safe_dump(rule, sort_keys=False, allow_unicode=True), nl=False)
