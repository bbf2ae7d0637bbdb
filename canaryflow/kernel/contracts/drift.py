"""The prediction log and drift monitoring contracts shared by the inference server (which writes the
log), the controller (which reads it and monitors drift) and notifications (which send drift events).

Prediction-log record, one JSON object per line:
`{"t": unix seconds, "model", "version", "latency_ms", "tokens", "embedding": [...], "text"?}`.
`text` is present only when the server was told to keep raw inputs.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from canaryflow.kernel.contracts.notifications import CheckSummary, NoticeEvent, RolloutNotice

# Files of the local prediction log: `<dir>/<model>/predictions-<start unix s>-<pid>.<format>`, rotated
# by size or age. JSONL: appended line by line, complete once a newer file of the same process exists.
# Parquet: written as `<name>.parquet.tmp` and renamed when closed, so a `.parquet` file is always whole.
JSONL_SUFFIX = ".jsonl"
PARQUET_SUFFIX = ".parquet"
TEMP_SUFFIX = ".tmp"
PREDICTION_FILE_PREFIX = "predictions-"
PREDICTION_FILE_GLOB = f"{PREDICTION_FILE_PREFIX}*{JSONL_SUFFIX}"
PARQUET_FILE_GLOB = f"{PREDICTION_FILE_PREFIX}*{PARQUET_SUFFIX}"
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]")


def model_folder_name(model: str) -> str:
    """A model's folder in the log directory: its name, anything but `[A-Za-z0-9._-]` made `_`."""
    return _UNSAFE_IN_NAME.sub("_", model)


def prediction_file_name(start: float, pid: int, suffix: str) -> str:
    """`predictions-<start unix s>-<pid><suffix>`: one writer per process, files ordered by start."""
    return f"{PREDICTION_FILE_PREFIX}{start:.3f}-{pid}{suffix}"


def process_files_glob(pid: int, suffix: str) -> str:
    """The files one process wrote (what its retention counts)."""
    return f"{PREDICTION_FILE_PREFIX}*-{pid}{suffix}"


def prediction_file_start(name: str) -> float:
    """The start time in a prediction file's name (0 when the name has none)."""
    try:
        return float(name.split("-")[1])
    except (IndexError, ValueError):
        return 0.0


PredictionLogFormat = Literal["jsonl", "parquet"]


class PredictionColumn(StrEnum):
    """A prediction record's fields, in order: the JSONL keys and the Parquet columns
    (`PredictionRecord` declares the same names; tests/architecture holds them together)."""

    T = "t"
    MODEL = "model"
    VERSION = "version"
    LATENCY_MS = "latency_ms"
    TOKENS = "tokens"
    EMBEDDING = "embedding"
    TEXT = "text"


PARQUET_COLUMNS: tuple[str, ...] = tuple(c.value for c in PredictionColumn)
# The Parquet type of each column, as a pyarrow type alias (`pyarrow.type_for_alias`): the writer
# writes these and the reader casts to them. The embedding is a fixed-size list of float32 (its size
# the model's dimensions); `text` is null unless raw text is kept. `tokens` has been int32 since the
# first writer; the reader casts any integer column to it, so a file from another writer still reads.
PARQUET_TYPES: dict[PredictionColumn, str] = {
    PredictionColumn.T: "float64",
    PredictionColumn.MODEL: "string",
    PredictionColumn.VERSION: "string",
    PredictionColumn.LATENCY_MS: "float64",
    PredictionColumn.TOKENS: "int32",
    PredictionColumn.EMBEDDING: "float32",
    PredictionColumn.TEXT: "string",
}

# Event types for notifications and webhooks (a retraining pipeline can act on `drift.detected`).
EVENT_DRIFT_DETECTED = "drift.detected"
EVENT_DRIFT_CLEARED = "drift.cleared"
DriftEventType = Literal["drift.detected", "drift.cleared"]

# MLflow model-version tag the monitor sets (value "true"/"false") when a registry is configured.
DRIFT_TAG = "canaryflow.drift"


class PredictionRecord(BaseModel):
    """One sampled prediction."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    t: float = Field(ge=0, description="unix seconds when the response was sent")
    model: str = Field(min_length=1)
    version: str = Field(min_length=1)
    latency_ms: float = Field(ge=0)
    tokens: int = Field(ge=0)
    embedding: list[float] = Field(min_length=1)
    text: str | None = None


class DriftCheck(BaseModel):
    """One check of a verdict: `drift` is `statistic > threshold`; both null when it could not run."""

    name: str
    statistic: float | None
    threshold: float | None
    drift: bool
    samples: int = 0
    note: str = ""


class DriftVerdict(BaseModel):
    drift: bool
    checks: list[DriftCheck]


class DriftEvent(BaseModel):
    """Sent to listeners (notifications, webhooks) when a champion's drift state changes."""

    type: DriftEventType
    model: str
    version: str
    at: float
    verdict: DriftVerdict
    action: str = Field(
        default="",
        description="what the controller did about a detection under `on_drift: rollback` (rolled back "
        "to vN, or why it could not act); empty when the policy only reports",
    )


def drift_notice(event: DriftEvent) -> RolloutNotice:
    """The notice the notification channels send for a drift event (`drift_detected` / `drift_cleared`);
    the subject carries the time so that a second detection of one version is not taken for a retry."""
    kind = NoticeEvent.DRIFT_DETECTED if event.type == EVENT_DRIFT_DETECTED else NoticeEvent.DRIFT_CLEARED
    checks = [
        CheckSummary(
            metric=c.name,
            verdict="fail" if c.drift else "pass",
            reason=f"{c.statistic:.3g} {'>' if c.drift else '<='} {c.threshold:.3g}"
            if c.statistic is not None and c.threshold is not None
            else c.note,
        )
        for c in event.verdict.checks
    ]
    fired = [c.name for c in event.verdict.checks if c.drift]
    return RolloutNotice(
        event=kind,
        rollout_id=f"drift-{event.model}-v{event.version}-{int(event.at)}",
        model=event.model,
        baseline_version=event.version,
        canary_version=event.version,
        environment="champion",
        phase="drifting" if kind is NoticeEvent.DRIFT_DETECTED else "stable",
        at=event.at,
        reason="; ".join(
            p
            for p in (
                f"drift in {', '.join(fired)}" if fired else "every check within its threshold",
                event.action,
            )
            if p
        ),
        checks=checks,
    )
