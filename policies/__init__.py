"""Kernel layer: rollout and drift policies, their schemas (pure pydantic) and the YAML shipped beside.

The rollout policy's schema is `policies.model`, the drift monitor's `policies.drift_policy`; this
module loads a policy file by path or shipped name.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ValidationError

from canaryflow.kernel.guarded_input import InputRefused, parse_yaml, read_regular_file
from policies.model import (
    TUNED_PRIOR,
    ApprovalPolicy,
    ErrorBudget,
    MetricPolicy,
    Policy,
    QueryTemplate,
    SampleRatioPolicy,
    ThinEvidencePolicy,
    TrafficStep,
    default_metrics,
    tuned_policy_name,
)

SHIPPED_DIR = Path(__file__).resolve().parent
# A policy is a page of YAML; anything larger (or endless, like /dev/zero) is refused unread.
MAX_POLICY_BYTES = 1_000_000

__all__ = [
    "SHIPPED_DIR",
    "TUNED_PRIOR",
    "ApprovalPolicy",
    "ErrorBudget",
    "MetricPolicy",
    "Policy",
    "PolicyError",
    "QueryTemplate",
    "SampleRatioPolicy",
    "ThinEvidencePolicy",
    "TrafficStep",
    "default_metrics",
    "load_policy",
    "parse_policy",
    "read_policy_document",
    "tuned_policy_name",
    "validation_message",
]


class PolicyError(ValueError):
    """A policy cannot be used; the message names the file and the field at fault, on one line."""


_NAMED_FIELD = re.compile(r"^(?P<field>[a-z_]+(?:\[\d+\])?(?:\.[a-z_]+)*): (?P<message>.*)$", re.DOTALL)


def _field_path(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def validation_message(exc: ValidationError) -> str:
    """`<field path>: <why>` for a policy document's first error, e.g. `steps[1].weight: ...`."""
    first = exc.errors()[0]
    where = _field_path(tuple(first["loc"]))
    message = str(first["msg"]).removeprefix("Value error, ")
    # Cross-field checks say which field they fault ("alternative: ..."); attach it to the path.
    named = _NAMED_FIELD.match(message)
    if named:
        where = f"{where}.{named['field']}" if where else named["field"]
        message = named["message"]
    where = where or "policy"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {message}{more}"


def parse_policy(data: object, source: str = "<policy>") -> Policy:
    """Validate a policy document; errors name the field (e.g. `steps[1].weight`) and why."""
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: a policy must be a mapping of fields, got {type(data).__name__}")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(f"{source}: {validation_message(exc)}") from exc


def read_policy_document(
    name_or_path: str | Path, shipped_dir: Path = SHIPPED_DIR, kind: str = "policy"
) -> tuple[object, str]:
    """The YAML document of a shipped policy (a bare name, looked up in `shipped_dir`) or of a file,
    and the path it came from; PolicyError naming the file otherwise."""
    text_name = str(name_or_path)
    path = Path(text_name)
    if not path.suffix and "/" not in text_name:
        path = shipped_dir / f"{text_name}.yaml"
        if not path.is_file():
            shipped = sorted(p.stem for p in shipped_dir.glob("*.yaml"))
            raise PolicyError(f"policy {text_name!r}: no such shipped {kind} (shipped: {', '.join(shipped)})")
    return _read_yaml(path, kind), str(path)


def load_policy(name_or_path: str | Path) -> Policy:
    """A shipped policy by name ("default" = policies/default.yaml), or a YAML file by path; either
    with `@prior_strength=K` (`tuned_policy_name`). A policy whose `thin_evidence.switch_to` cannot
    be read is refused here, naming that field, rather than when a rollout would need it."""
    text = str(name_or_path)
    base, tuned, strength = text.partition(TUNED_PRIOR)
    document, source = read_policy_document(base)
    if tuned and isinstance(document, dict):
        try:
            document = {**document, "prior_strength": float(strength)}
        except ValueError:
            raise PolicyError(f"policy {text!r}: prior_strength: not a number: {strength!r}") from None
    policy = parse_policy(document, source)
    if policy.thin_evidence is not None:
        try:
            parse_policy(*read_policy_document(policy.thin_evidence.switch_to))
        except PolicyError as exc:
            raise PolicyError(f"{source}: thin_evidence.switch_to: {exc}") from exc
    return policy


def _read_yaml(path: Path, kind: str = "policy") -> object:
    """The YAML document in `path` through the guarded reader: every way it can be unreadable (not a
    regular file, too large, not UTF-8, not YAML, too deep, a long integer, NaN) is one PolicyError."""
    try:
        return parse_yaml(read_regular_file(path, MAX_POLICY_BYTES, what=kind), str(path), MAX_POLICY_BYTES)
    except InputRefused as exc:
        raise PolicyError(str(exc)) from exc
