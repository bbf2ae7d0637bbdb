"""The prediction log and drift monitoring contracts shared by the inference server (which writes the
log), the controller (which reads it and monitors drift) and notifications (which send drift events).

Prediction-log record, one JSON object per line:
`{"t": unix seconds, "model", "version", "latency_ms", "tokens", "embedding": [...], "text"?}`.
`text` is present only when the server was told to keep raw inputs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Files of the local JSONL backend: `<dir>/<model>/predictions-<start unix s>-<pid>.jsonl`, rotated
# by size or age; a file is complete once a newer one of the same process exists.
PREDICTION_FILE_GLOB = "predictions-*.jsonl"

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
