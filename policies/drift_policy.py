"""The drift-monitoring policy: which checks watch a champion's traffic, how often, and the false-alarm
budget they share.

The budget is stated per month, not per window: a monitor that looks every hour looks 720 times a
month, and a per-window p-value of 0.01 would raise about seven false alarms a month. The budget is
split evenly over the looks of a month and over the enabled checks (Bonferroni), so both the expected
number of false alarms in a month and the chance of any at all stay at or below
`false_alarms_per_month` (when that is at most 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from policies import PolicyError, read_policy_document, validation_message

MONTH_S = 30 * 86400.0
# What the controller does when a champion drifts: only report it (metrics, API, notices, tag), or also
# roll the model back to the champion before it. Reporting is the default because a drifted input
# distribution is not always the model's fault (docs/monitoring.md, "Acting on drift").
DriftResponse = Literal["report", "rollback"]
SHIPPED_MONITOR_DIR = Path(__file__).resolve().parent / "monitor"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbeddingCheckPolicy(_Strict):
    """Two-sample test on the vectors: squared MMD with an RBF kernel, computed on random Fourier
    features (a fixed random projection of the embedding followed by a cosine)."""

    enabled: bool = True
    features: int = Field(default=128, ge=8, le=2048, description="random Fourier features")
    seed: int = Field(default=0, ge=0, description="seed of the random projection (fixed per reference)")
    bandwidth: float | None = Field(
        default=None, gt=0, description="RBF bandwidth; default: median distance within the reference"
    )


class CentroidCheckPolicy(_Strict):
    """The mean cosine similarity of the window's embeddings to the reference centroid (the seed's
    "mean confidence" statistic), as a two-sided z-test against the reference's own spread instead of
    a fixed 0.75: sensitive to a new topic taking a growing share, blind to changes that keep it."""

    enabled: bool = True
    min_change: float = Field(default=0.01, ge=0, lt=2, description="mean cosine change that never alarms")


class TokensCheckPolicy(_Strict):
    """Input length in tokens: two-sample Kolmogorov-Smirnov distance, with a floor on the effect."""

    enabled: bool = True
    min_effect: float = Field(default=0.1, ge=0, lt=1, description="KS distance below this never alarms")


class LatencyCheckPolicy(_Strict):
    """A latency quantile, read from the server's histogram buckets with the rollout analysis's
    confidence bounds: drift when the window's lower bound exceeds the reference's upper bound by more
    than `tolerance` (relative)."""

    enabled: bool = True
    quantile: float = Field(default=0.95, gt=0, lt=1)
    tolerance: float = Field(default=0.25, ge=0, description="relative increase that is tolerated")


class DriftPolicy(_Strict):
    name: str = "default"
    window_s: float = Field(default=3600.0, gt=0, description="length of the recent window")
    every_s: float | None = Field(
        default=None, gt=0, description="evaluation cadence (default: window_s); sets the looks per month"
    )
    false_alarms_per_month: float = Field(
        default=0.5, gt=0, le=1000, description="expected false alarms per month over all checks"
    )
    reference_window_s: float = Field(
        default=86400.0, gt=0, description="records after the version became champion that form the reference"
    )
    reference_min_samples: int = Field(default=200, ge=20)
    reference_max_samples: int = Field(default=5000, ge=20, description="a larger reference is subsampled")
    min_samples: int = Field(default=50, ge=5, description="a window with fewer records decides nothing")
    max_samples: int = Field(default=2000, ge=5, description="a larger window is subsampled")
    embedding: EmbeddingCheckPolicy = Field(default_factory=EmbeddingCheckPolicy)
    centroid: CentroidCheckPolicy = Field(default_factory=CentroidCheckPolicy)
    tokens: TokensCheckPolicy = Field(default_factory=TokensCheckPolicy)
    latency: LatencyCheckPolicy = Field(default_factory=LatencyCheckPolicy)
    on_drift: DriftResponse = Field(
        default="report",
        description="report: metrics, API, notices only; rollback: also restore the previous champion",
    )

    @model_validator(mode="after")
    def _consistent(self) -> DriftPolicy:
        if self.reference_max_samples < self.reference_min_samples:
            raise ValueError("reference_max_samples: below reference_min_samples")
        if self.max_samples < self.min_samples:
            raise ValueError("max_samples: below min_samples")
        if self.enabled_checks == 0:
            raise ValueError("embedding: at least one check must be enabled")
        return self

    @property
    def cadence_s(self) -> float:
        return self.every_s if self.every_s is not None else self.window_s

    @property
    def looks_per_month(self) -> float:
        return MONTH_S / self.cadence_s

    @property
    def enabled_checks(self) -> int:
        return sum((self.embedding.enabled, self.centroid.enabled, self.tokens.enabled, self.latency.enabled))

    @property
    def alpha_per_check(self) -> float:
        """False-alarm probability allowed to one check at one look (Bonferroni over looks and checks)."""
        return min(0.5, self.false_alarms_per_month / self.looks_per_month / self.enabled_checks)


class DriftPolicyError(PolicyError):
    """A drift policy cannot be used; the message names the file and the field, on one line."""


def parse_drift_policy(data: object, source: str = "<drift policy>") -> DriftPolicy:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DriftPolicyError(f"{source}: a drift policy must be a mapping, got {type(data).__name__}")
    try:
        return DriftPolicy.model_validate(data)
    except ValidationError as exc:
        raise DriftPolicyError(f"{source}: {validation_message(exc)}") from exc


def load_drift_policy(name_or_path: str | Path) -> DriftPolicy:
    """A shipped drift policy by name ("default" = policies/monitor/default.yaml) or a YAML file."""
    try:
        data, source = read_policy_document(name_or_path, SHIPPED_MONITOR_DIR, "drift policy")
    except DriftPolicyError:
        raise
    except PolicyError as exc:
        raise DriftPolicyError(str(exc)) from exc
    return parse_drift_policy(data, source)
