"""`canaryflow doctor`: preflight of a cluster before the first rollout (canaryflow/app/doctor.py).

One line per check, PASS or FAIL with the fix; exit 0 only when every check passes, 1 when one
fails, 2 on bad usage. Read-only: the apply is a server-side dry run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError

from canaryflow.app.commands.cli_shared import exit_with_error
from canaryflow.kernel.component_settings import SettingsError
from canaryflow.kernel.errors import first_error


def _fail(message: str) -> NoReturn:
    exit_with_error("doctor", message)


def _api_client(server: str | None, kubeconfig: Path | None, context: str | None, in_cluster: bool) -> Any:
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    if server:
        configuration = client.Configuration()
        configuration.host = server.rstrip("/")
        return client.ApiClient(configuration)
    try:
        if in_cluster:
            config.load_incluster_config()
            return client.ApiClient()
        path = kubeconfig or Path(os.environ.get("KUBECONFIG", "~/.kube/config")).expanduser()
        if not path.is_file():
            _fail(f"--kubeconfig: no kubeconfig at {path} (or use --in-cluster / --server)")
        return config.new_client_from_config(config_file=str(path), context=context)
    except ConfigException as exc:
        _fail(f"{'--in-cluster' if in_cluster else '--kubeconfig'}: {str(exc).splitlines()[0]}")


def doctor(
    model: Annotated[str, typer.Option("--model", help="model name the rollouts will roll out")] = "minilm",
    version: Annotated[
        str, typer.Option("--version", help="a registry version to render for the dry run")
    ] = "1",
    environment: Annotated[str, typer.Option("--env", help="environment (overlay, default namespace)")] = (
        "production"
    ),
    policy: Annotated[
        str, typer.Option("--policy", help="policy (its traffic mode picks the CRDs)")
    ] = "default",
    repo_url: Annotated[
        str | None, typer.Option("--repo-url", help="repo Argo CD syncs from (default: the GitOps remote)")
    ] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"),
    ] = None,
    context: Annotated[str | None, typer.Option("--context", help="kubeconfig context")] = None,
    in_cluster: Annotated[
        bool, typer.Option("--in-cluster", help="use the pod's service account (run inside the cluster)")
    ] = False,
    server: Annotated[
        str | None, typer.Option("--server", help="API server URL without auth (e.g. `kubectl proxy`)")
    ] = None,
) -> None:
    """Check a cluster before the first rollout: CRDs installed, access allowed (SelfSubjectAccessReview),
    GPU nodes, and a server-side dry-run apply of the rendered manifests. Exit 0 only when all pass."""
    from canaryflow.app.doctor import Kube, Target, run_checks
    from gitops.gitops_settings import GitOpsSettings
    from gitops.model import RenderRequest
    from policies import PolicyError, load_policy
    from workflows.workflow_settings import WorkflowSettings

    try:
        rollout_policy = load_policy(policy)
    except (PolicyError, OSError) as exc:
        _fail(f"--policy: {exc}")
    try:
        RenderRequest(model=model, environment=environment, baseline_version=version)
        gitops, workflows = GitOpsSettings(), WorkflowSettings()
    except ValidationError as exc:
        _fail(first_error(exc))
    except SettingsError as exc:
        _fail(f"settings: {exc}")
    if repo_url:
        gitops = gitops.model_copy(update={"render": gitops.render.model_copy(update={"repo_url": repo_url})})
    target = Target(model, version, environment, rollout_policy, policy, gitops, workflows)
    kube = Kube(_api_client(server, kubeconfig, context, in_cluster))
    ok = run_checks(kube, target, lambda result: typer.echo(result.line()))
    typer.echo("all checks passed" if ok else "some checks failed: see FAIL lines")
    raise typer.Exit(code=0 if ok else 1)
