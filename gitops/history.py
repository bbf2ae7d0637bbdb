"""The audit log: commit messages with trailers, written and read back.

Each rollout step is one commit whose trailers say which rollout, which version, what weight and what
decision; reading them back answers "what was the last promoted state" without any other store.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from pydantic import BaseModel

from canaryflow.kernel.types import RolloutSpec

# `Reason` is on rollbacks only: why, and for an abort through the API who asked (docs/controller.md).
TRAILER_KEYS = ("Rollout-Id", "Model-Version", "Traffic-Weight", "Decision", "Reason")
_DECISION = re.compile(r"[a-z][a-z0-9-]{0,31}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class AuditEntry(BaseModel):
    sha: str
    date: str
    author: str
    subject: str
    trailers: dict[str, str]

    @property
    def decision(self) -> str | None:
        return self.trailers.get("Decision")

    @property
    def model_version(self) -> str | None:
        return self.trailers.get("Model-Version")


def check_decision(decision: str) -> str:
    if not _DECISION.fullmatch(decision):
        raise ValueError(f"decision: {decision!r} is not a word of lowercase letters, digits and '-'")
    return decision


def one_line(text: str, limit: int = 200) -> str:
    """Free text (a rollback reason) made safe for a commit message: one line, bounded."""
    flat = _CONTROL.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def commit_message(
    subject: str,
    spec: RolloutSpec,
    version: str,
    weight: int,
    decision: str,
    body: str = "",
    reason: str = "",
) -> str:
    trailers = {
        "Rollout-Id": spec.rollout_id,
        "Model-Version": version,
        "Traffic-Weight": str(weight),
        "Decision": check_decision(decision),
        # The policy the rollout runs under: the thin-evidence switch may have chosen another than the
        # trigger's (controller/policy_choice.py), e.g. `low-traffic@prior_strength=1300`.
        "Policy": one_line(spec.policy),
    }
    if reason:  # one line in the trailer block, so `git log --format=%(trailers)` reads it back
        trailers["Reason"] = one_line(reason)
    parts = [one_line(subject)]
    if body:
        parts.append(body)
    parts.append("\n".join(f"{key}: {value}" for key, value in trailers.items()))
    return "\n\n".join(parts) + "\n"


# git log format: fields split by US, records by RS; trailers unfolded, one "Key: value" a line.
LOG_FORMAT = "%H%x1f%aI%x1f%an%x1f%s%x1f%(trailers:only,unfold)%x1e"


def parse_log(output: str) -> list[AuditEntry]:
    entries = []
    for record in output.split("\x1e"):
        record = record.strip("\n")
        if not record:
            continue
        sha, date, author, subject, trailer_text = record.split("\x1f")
        trailers = {}
        for line in trailer_text.splitlines():
            key, sep, value = line.partition(":")
            if sep and key in TRAILER_KEYS:
                trailers[key] = value.strip()
        entries.append(AuditEntry(sha=sha, date=date, author=author, subject=subject, trailers=trailers))
    return entries


def read_log(git_dir: Path, branch: str = "main") -> list[AuditEntry]:
    """A repository's audit log on `branch`, newest first (a bare GitOps remote, or a clone's .git):
    what tests and benchmarks check the commits and their trailers against."""
    out = subprocess.run(
        ["git", "--git-dir", str(git_dir), "log", f"--format={LOG_FORMAT}", branch],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_log(out)


def last_promoted_version(entries: list[AuditEntry]) -> str | None:
    """The version of the newest promotion to full traffic in `entries` (newest first), if any."""
    for entry in entries:
        if (
            entry.decision == "promote"
            and entry.trailers.get("Traffic-Weight") == "100"
            and entry.model_version
        ):
            return entry.model_version
    return None
