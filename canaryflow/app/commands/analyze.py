"""`canaryflow analyze`: canary analysis offline, from request logs (design.md's replay format)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import numpy as np
import typer

from canaryflow.app.commands.cli_shared import exit_with_error
from canaryflow.kernel.guarded_input import InputRefused, parse_json
from policies import PolicyError, load_policy

if TYPE_CHECKING:
    from canaryflow.kernel.analysis.replay import RequestLog
    from policies.model import Policy


def _request_log(t: np.ndarray, canary: np.ndarray, latency_s: np.ndarray, ok: np.ndarray) -> RequestLog:
    # The statistics import SciPy: loaded when an analysis runs, not by every CLI command (the
    # inference server's start-up goes through this CLI too).
    from canaryflow.kernel.analysis.replay import RequestLog

    return RequestLog(t=t, canary=canary, latency_s=latency_s, ok=ok)


app = typer.Typer(help="Canary analysis: decide offline from request logs.", no_args_is_help=True)


class LogError(ValueError):
    """A request log cannot be read; the message names the file, the line and the field."""


def _fail(message: str) -> NoReturn:
    exit_with_error("analyze", message)


@app.callback()
def _group() -> None:
    """Canary analysis: decide offline from request logs."""


# The policy both commands judge with (required).
PolicyName = Annotated[
    str, typer.Option("--policy", help="policy YAML file, or a shipped policy name (default)")
]


@app.command("replay")
def replay(
    policy: PolicyName,
    inputs: list[Path] = typer.Option(..., "--input", help="request log(s), JSON Lines; several may follow"),
    more_inputs: list[Path] | None = typer.Argument(None, metavar="[LOG2.jsonl ...]", show_default=False),
    step: int = typer.Option(0, "--step", min=0, help="policy step whose weight and guards apply"),
    canary_weight: float | None = typer.Option(
        None,
        "--canary-weight",
        min=0.0,
        max=100.0,
        help="canary share (percent) instead of the step's weight",
    ),
    start: float | None = typer.Option(
        None,
        "--start-s",
        help="log time the step started (default: the look grid just before the first request)",
    ),
    bake: bool = typer.Option(
        False, "--bake", help="after a pass, go on for the policy's bake_s as the last step would"
    ),
    whole_rollout: bool = typer.Option(
        False,
        "--rollout",
        help="the whole policy over the log: every step in order, warm-ups, bake, promotion, the watch",
    ),
    explain: bool = typer.Option(
        False, "--explain", help="also print each check in words, with units, to stderr"
    ),
) -> None:
    """Replay request logs through the engine as if live: one verdict (JSON) per line per input file.

    Each log line is {"t": seconds, "arm": "baseline"|"canary", "latency_ms": ms, "ok": bool}; the
    verdict's decided_at_s is the log time of the deciding look (null when the log ends undecided).
    """
    try:
        rollout_policy = load_policy(policy)
    except PolicyError as exc:
        _fail(f"--policy: {exc}")
        return
    if step >= len(rollout_policy.steps):
        _fail(f"--step: {step} is beyond the policy's {len(rollout_policy.steps)} steps")
    from canaryflow.kernel.analysis.replay import replay_log

    paths = list(inputs) + list(more_inputs or [])
    for path in paths:
        if not path.is_file():
            _fail(f"--input: {path}: no such file")
    if whole_rollout:
        if step or canary_weight is not None or bake:
            _fail(
                "--rollout: runs every step, the bake and the watch itself:"
                " drop --step, --canary-weight, --bake"
            )
        _replay_rollouts(rollout_policy, paths, start, explain)
        return
    for path in paths:
        try:
            log = read_request_log(path)
            verdict = replay_log(
                rollout_policy,
                log,
                step_index=step,
                canary_weight=canary_weight,
                start_s=start,
                bake_s=rollout_policy.bake_s if bake else 0.0,
            )
        except (LogError, ValueError) as exc:
            _fail(str(exc))
            return
        sys.stdout.write(verdict.model_dump_json() + "\n")
        sys.stdout.flush()
        if explain:
            at = "undecided" if verdict.decided_at_s is None else f"at {verdict.decided_at_s:.0f} s"
            lines = [f"{path.name}: {verdict.decision} {at}"] + [f"  {c.reason}" for c in verdict.checks]
            typer.echo("\n".join(lines), err=True)


def _replay_rollouts(rollout_policy: Policy, paths: list[Path], start: float | None, explain: bool) -> None:
    """`replay --rollout`: one JSON record per log (the decision, the phase it was made in, when)."""
    from canaryflow.kernel.analysis.rollout_replay import replay_rollout

    for path in paths:
        try:
            result = replay_rollout(rollout_policy, read_request_log(path), start_s=start)
        except (LogError, ValueError) as exc:
            _fail(str(exc))
            return
        sys.stdout.write(json.dumps(result.to_dict(), separators=(",", ":")) + "\n")
        sys.stdout.flush()
        if explain:
            at = "undecided" if result.decided_at_s is None else f"at {result.decided_at_s:.0f} s"
            lines = [f"{path.name}: {result.decision} in {result.phase} {at}"]
            for phase in result.phases:
                when = "undecided" if phase.decided_at_s is None else f"{phase.decided_at_s:.0f} s"
                lines.append(f"  {phase.phase} from {phase.started_at_s:.0f} s: {phase.decision} at {when}")
                lines += [f"    {c.reason}" for c in phase.verdict.checks]
            typer.echo("\n".join(lines), err=True)


@app.command("plan")
def plan(
    policy: PolicyName,
    rate: str = typer.Option(
        ..., "--rate", help="requests per second the model serves in all (both versions)"
    ),
    error_rate: str = typer.Option(
        "0.005", "--error-rate", help="the baseline's share of 5xx (0.005 = 0.5%)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the forecast as JSON instead of a table"),
) -> None:
    """How long each check of each step needs to decide at this traffic, before a rollout starts.

    For a canary identical to its baseline (the case where an undecided step is a failed release),
    with log-normal latencies (p95 = 1.8 x median) unless the forecast runs live on the histogram seen.
    Prints the steps that cannot decide within max_duration_s and a policy that can, if one is shipped.
    """
    try:
        rollout_policy = load_policy(policy)
    except PolicyError as exc:
        _fail(f"--policy: {exc}")
        return
    rate_rps = _positive(rate, "--rate", "requests per second")
    errors = _positive(error_rate, "--error-rate", "share of requests", allow_zero=True)
    if errors >= 1:
        _fail(f"--error-rate: must be below 1 (a share of requests), got {error_rate}")
    from canaryflow.kernel.analysis.forecast import LOW_TRAFFIC_POLICIES, forecast, recommend

    result = forecast(rollout_policy, rate_rps, error_rate=errors)
    candidates = {name: load_policy(name) for name in LOW_TRAFFIC_POLICIES if name != rollout_policy.name}
    better = None if result.fits else recommend(rollout_policy, rate_rps, candidates, error_rate=errors)
    if as_json:
        record = result.to_dict()
        record["recommended"] = None if better is None else {
            "policy": better.name, "prior_strength": better.policy.prior_strength,
            "forecast": better.forecast.to_dict(),
        }  # fmt: skip
        sys.stdout.write(json.dumps(record) + "\n")
        return
    typer.echo(f"policy {rollout_policy.name} at {rate_rps:g} requests/s:")
    for s in result.steps:
        total = "more than a week" if s.seconds is None else f"{s.seconds:,.0f} s"
        verdict = "fits" if s.fits else f"over max_duration_s ({s.max_duration_s:,.0f} s)"
        typer.echo(
            f"  step {s.step + 1} ({s.weight:g}%, {s.canary_rps:.3g} canary req/s): {total}, {verdict}"
        )
        for c in s.checks:
            need = "not within 10 million requests" if c.seconds is None else f"{c.seconds:,.0f} s"
            typer.echo(f"    {c.metric}: {need} ({c.requests or '-'} canary requests)")
    for line in result.advice:
        typer.echo(line)
    if better is not None:
        typer.echo(f"recommended: {better.label} (every step within max_duration_s)")


def _positive(text: str, option: str, what: str, allow_zero: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        _fail(f"{option}: must be a number ({what}), got {text!r}")
        raise
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        _fail(f"{option}: must be a positive number ({what}), got {text!r}")
    return value


def read_request_log(path: Path) -> RequestLog:
    """Columns of a JSON Lines request log; extra keys are ignored, a bad line is named."""
    fast = _read_with_arrow(path)
    return fast if fast is not None else _read_line_by_line(path)


def _read_with_arrow(path: Path) -> RequestLog | None:
    """The fast path (pyarrow's JSON reader); None whenever it cannot vouch for the file."""
    try:
        import pyarrow.json as pa_json
    except ImportError:
        return None
    try:
        table = pa_json.read_json(path)
    except Exception:
        return None
    needed = ("t", "arm", "latency_ms", "ok")
    if table.num_rows == 0 or any(name not in table.column_names for name in needed):
        return None
    try:
        t = table.column("t").to_numpy().astype(float)
        arm = table.column("arm").to_numpy(zero_copy_only=False)
        latency = table.column("latency_ms").to_numpy().astype(float)
        ok = table.column("ok").to_numpy(zero_copy_only=False)
    except Exception:
        return None
    if ok.dtype != np.bool_ or arm.dtype != object:
        return None
    is_canary = arm == "canary"
    if not np.all(is_canary | (arm == "baseline")) or not np.all(np.isfinite(t)):
        return None
    if not np.all(np.isfinite(latency)) or np.any(latency < 0):
        return None
    return _request_log(t, is_canary, latency / 1000.0, ok.astype(bool))


def _read_line_by_line(path: Path) -> RequestLog:
    t: list[float] = []
    canary: list[bool] = []
    latency: list[float] = []
    ok: list[bool] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = parse_json(raw, where, max_bytes=None)
            except InputRefused as exc:
                raise LogError(str(exc)) from exc
            if not isinstance(record, dict):
                raise LogError(f"{where}: a request must be a JSON object")
            t.append(_number(record, "t", where))
            arm = record.get("arm")
            if arm not in ("baseline", "canary"):
                raise LogError(f"{where}: arm: must be 'baseline' or 'canary', got {arm!r}")
            canary.append(arm == "canary")
            value = _number(record, "latency_ms", where)
            if value < 0:
                raise LogError(f"{where}: latency_ms: must be >= 0, got {value}")
            latency.append(value / 1000.0)
            flag = record.get("ok")
            if not isinstance(flag, bool):
                raise LogError(f"{where}: ok: must be true or false, got {flag!r}")
            ok.append(flag)
    if not t:
        raise LogError(f"{path}: no requests in the log")
    return _request_log(
        np.asarray(t, dtype=float),
        np.asarray(canary, dtype=bool),
        np.asarray(latency, dtype=float),
        np.asarray(ok, dtype=bool),
    )


def _number(record: dict[str, object], key: str, where: str) -> float:
    value = record.get(key)
    try:  # an integer past a float's range (2^1024) is no time or latency either
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.nan
    if not math.isfinite(number):
        raise LogError(f"{where}: {key}: must be a finite number, got {str(value)[:40]}")
    return number
