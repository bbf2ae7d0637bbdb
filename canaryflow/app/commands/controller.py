"""`canaryflow controller`: the webhook server and reconcile loop, and a look at its rollouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError

from canaryflow.app.commands.cli_shared import ListenHost, ListenPort, exit_with_error
from canaryflow.kernel.errors import first_error

app = typer.Typer(
    help="The controller: registry webhooks in, rollouts driven to a decision.", no_args_is_help=True
)


def _fail(message: str) -> NoReturn:
    exit_with_error("controller", message)


def _settings(overrides: dict[str, Any]) -> Any:
    from canaryflow.kernel.component_settings import SettingsError
    from controller.controller_settings import ControllerSettings

    try:
        return ControllerSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        _fail(first_error(exc, "settings"))
    except SettingsError as exc:
        _fail(str(exc))


@app.command("serve")
def serve(
    host: ListenHost = None,
    port: ListenPort = None,
    db: Annotated[
        Path | None, typer.Option(help="SQLite file holding rollouts (and the local runner's state)")
    ] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow registry the webhooks come from")] = None,
    interval: Annotated[float | None, typer.Option(help="seconds between reconcile ticks")] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Serve the webhook endpoints and the rollout API, and reconcile rollouts until interrupted.

    Secrets come from the environment: CANARYFLOW_CONTROLLER_MLFLOW_WEBHOOK_SECRET (or _FILE),
    ..._DATABRICKS_WEBHOOK_SECRET, ..._GITHUB_WEBHOOK_SECRET; ..._API_TOKEN for the API's PUT endpoint.
    """
    from canaryflow.adapters.database import DatabaseError
    from canaryflow.app.wiring import build_service
    from controller.observability import configure_json_logging
    from controller.service import DatabaseInUse, lock_database

    settings = _settings(
        {
            "host": host,
            "port": port,
            "db_path": db,
            "registry_tracking_uri": tracking_uri,
            "reconcile_interval_s": interval,
        }
    )
    from controller.webhooks.registry import SOURCES

    if not any(settings.webhook_secret(source.secret_setting) for source in SOURCES):
        _fail(
            "mlflow_webhook_secret: no webhook secret set (CANARYFLOW_CONTROLLER_MLFLOW_WEBHOOK_SECRET); "
            "every delivery would be refused"
        )
    configure_json_logging(log_level.upper())
    try:
        lock = lock_database(settings.db_path)
        service = build_service(settings)
    except ValidationError as exc:  # another section's settings, e.g. notify.links
        _fail(first_error(exc, "settings"))
    except (ValueError, OSError, DatabaseInUse, DatabaseError) as exc:
        _fail(str(exc))
    try:
        service.serve()
    finally:
        lock.close()


@app.command("rollouts")
def rollouts(
    db: Annotated[Path | None, typer.Option(help="the controller's SQLite file")] = None,
    rollout_id: Annotated[str | None, typer.Argument(help="one rollout, with its steps and history")] = None,
) -> None:
    """Print rollouts (or one rollout in detail) as JSON, read from the store (the shared PostgreSQL
    database when CANARYFLOW_CONTROLLER_DATABASE_URL is set)."""
    from canaryflow.adapters.database import DatabaseError, open_database
    from controller.rollout.store import RolloutStore

    settings = _settings({"db_path": db})
    url = settings.database_url
    if url is None and not settings.db_path.exists():
        _fail(f"db_path: {settings.db_path} does not exist")
    try:
        store = RolloutStore(open_database(url.get_secret_value()) if url is not None else settings.db_path)
    except DatabaseError as exc:
        _fail(f"database_url: {exc}")
    if rollout_id is None:
        typer.echo(json.dumps([r.model_dump() for r in store.rollouts()], indent=2))
        return
    detail = store.detail(rollout_id)
    if detail is None:
        _fail(f"rollout_id: no rollout {rollout_id!r} in {settings.db_path}")
    typer.echo(detail.model_dump_json(indent=2) if detail else "")


@app.command("backup")
def backup(
    db: Annotated[Path | None, typer.Option(help="the controller's SQLite file (it may be running)")] = None,
    out: Annotated[Path, typer.Option(help="file to write the copy to (replaced atomically)")] = Path(
        "canaryflow-controller.backup.db"
    ),
) -> None:
    """Copy the controller's database consistently while it runs (SQLite online backup, WAL included).

    Restore: stop the controller, move the copy to the --db path, delete any `<db>-wal` and `<db>-shm`
    beside it, start the controller again (docs/operations.md)."""
    from controller.rollout.backup import BackupError, backup_database

    settings = _settings({"db_path": db})
    try:
        result = backup_database(settings.db_path, out)
    except BackupError as exc:
        _fail(str(exc))
    typer.echo(result.model_dump_json())
