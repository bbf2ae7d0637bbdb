"""`canaryflow monitor`: drift of a champion's traffic, offline, from prediction-log files.

`replay` runs the same statistics as the controller's drift monitor on two files (JSONL or Parquet,
by extension): a reference window and a current window, and prints one JSON verdict. Exit 0 whether
or not it finds drift (the verdict says), 2 on bad input with a one-line message naming the file,
line and field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import typer

from canaryflow.app.commands.cli_shared import exit_with_error

app = typer.Typer(help="Drift monitoring: compare prediction-log windows offline.", no_args_is_help=True)


def _fail(message: str) -> NoReturn:
    exit_with_error("monitor", message)


@app.callback()
def _group() -> None:
    """Drift monitoring: compare prediction-log windows offline."""


@app.command("replay")
def replay(
    reference: Path = typer.Option(..., "--reference", help="prediction-log file of the reference window"),
    current: Path = typer.Option(..., "--current", help="prediction-log file (.jsonl/.parquet) to judge"),
    policy: str = typer.Option("default", "--policy", help="drift policy YAML, or a shipped name"),
) -> None:
    """Print {"drift": bool, "checks": [{"name", "statistic", "threshold", "drift", ...}]} for CURRENT
    against REFERENCE; each record is {"t", "model", "version", "latency_ms", "tokens", "embedding"}."""
    from canaryflow.adapters.predictions import PredictionLogError, read_records
    from canaryflow.kernel.drift_statistics import DriftInputError, Window, calibrate, evaluate
    from policies.drift_policy import DriftPolicyError, load_drift_policy

    try:
        drift_policy = load_drift_policy(policy)
    except DriftPolicyError as exc:
        _fail(f"--policy: {exc}")
        return
    try:
        ref_window = Window.from_records(read_records(reference))
        cur_window = Window.from_records(read_records(current))
    except (PredictionLogError, DriftInputError) as exc:
        _fail(str(exc))
        return
    try:
        verdict = evaluate(calibrate(drift_policy, ref_window), cur_window)
    except DriftInputError as exc:
        _fail(f"{current if str(exc).startswith('embedding') else reference}: {exc}")
        return
    try:  # NaN is not JSON: a statistic that is not a number is an error, never printed as one
        typer.echo(json.dumps(verdict.model_dump(mode="json"), allow_nan=False))
    except ValueError:
        _fail(f"{current}: a drift statistic is not a finite number; the embeddings are not usable")
