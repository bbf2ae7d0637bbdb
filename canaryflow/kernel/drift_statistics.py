"""Drift of a champion's traffic: a reference window against a recent window (pure statistics, no I/O).

Four checks, each held to the policy's per-look false-alarm probability `alpha` (the monthly budget
split over the looks of a month and the enabled checks):

- `embedding_mmd`: squared maximum mean discrepancy with an RBF kernel, computed on D random Fourier
  features phi(x) = sqrt(2/D) cos(Wx + b) (Rahimi & Recht 2007): the kernel mean embeddings become
  plain feature means, and MMD^2 ~ ||mean phi(ref) - mean phi(cur)||^2 costs O((n + m) D). Under no
  drift the difference of the two means is, by the central limit theorem, normal with covariance
  S (1/n + 1/m), S the features' covariance; so the statistic divided by (1/n + 1/m) follows
  sum_i lambda_i Z_i^2 (lambda the eigenvalues of S). Its (1 - alpha) quantile is found once per
  reference (`calibrate`) with a saddlepoint approximation, accurate at the tiny per-look alphas a
  monthly budget asks for, and fixes the threshold for every later window whatever its size.
- `embedding_centroid`: the mean cosine similarity of the window's embeddings to the reference's
  centroid, a two-sided z-test against the reference's per-record spread (the seed's fixed "mean
  confidence < 0.75" rule made a test): one direction only, so it sees a slowly growing new topic
  much earlier than the omnibus MMD, which spreads its power over every direction.
- `tokens_ks`: the two-sample Kolmogorov-Smirnov distance between input lengths, against its
  asymptotic critical value at `alpha` (conservative for integer lengths), with a floor on the effect
  so that a huge window does not alarm on a trivial shift.
- `latency`: a latency quantile from the server's histogram bounds with the rollout analysis's
  confidence bounds (`quantile_cs`): drift when the window's lower bound exceeds the reference's upper
  bound by more than the tolerance; each bound at alpha/2.

Statistics are reported so that `drift == statistic > threshold` for every check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

from canaryflow.kernel.analysis.sequential import quantile_cs
from canaryflow.kernel.contracts.buckets import LATENCY_BUCKETS_MS
from canaryflow.kernel.contracts.drift import DriftCheck, DriftVerdict, PredictionRecord
from policies.drift_policy import DriftPolicy

FloatArray = NDArray[np.float64]
_BOUNDS_MS = np.asarray(LATENCY_BUCKETS_MS, dtype=float)


class DriftInputError(ValueError):
    """Records that cannot form a window (mixed embedding sizes, none at all)."""


@dataclass(frozen=True)
class Window:
    """The records of one window as arrays (rows aligned)."""

    embeddings: FloatArray
    tokens: FloatArray
    latency_ms: FloatArray

    @property
    def size(self) -> int:
        return int(self.tokens.shape[0])

    @classmethod
    def from_records(cls, records: Sequence[PredictionRecord]) -> Window:
        if not records:
            return cls(np.zeros((0, 0)), np.zeros(0), np.zeros(0))
        dims = {len(r.embedding) for r in records}
        if len(dims) > 1:
            raise DriftInputError(f"embedding: records of one window have different sizes {sorted(dims)}")
        return cls(
            np.asarray([r.embedding for r in records], dtype=float),
            np.asarray([r.tokens for r in records], dtype=float),
            np.asarray([r.latency_ms for r in records], dtype=float),
        )

    def subsample(self, limit: int, seed: int) -> Window:
        """At most `limit` rows, drawn without replacement (deterministically for a seed)."""
        if self.size <= limit:
            return self
        keep = np.sort(np.random.default_rng(seed).choice(self.size, limit, replace=False))
        return Window(self.embeddings[keep], self.tokens[keep], self.latency_ms[keep])


@dataclass(frozen=True)
class RandomFeatures:
    """A fixed random projection and phase: phi(x) = sqrt(2/D) cos(x W^T + b), an RBF kernel map."""

    weights: FloatArray  # (D, d)
    phases: FloatArray  # (D,)

    def __call__(self, x: FloatArray) -> FloatArray:
        scale = np.sqrt(2.0 / self.weights.shape[0])
        return np.asarray(scale * np.cos(x @ self.weights.T + self.phases), dtype=float)


@dataclass(frozen=True)
class Reference:
    """Everything a window is compared with, computed once per reference."""

    policy: DriftPolicy
    size: int
    dim: int
    alpha: float
    features: RandomFeatures | None
    feature_mean: FloatArray | None
    noise_scale: float  # trace of the feature covariance: the statistic's mean under no drift
    centroid: FloatArray | None  # unit vector of the reference's mean embedding
    centroid_mean: float  # mean cosine of the reference's records to it, and their spread
    centroid_sd: float
    null_quantile: float  # (1 - alpha) quantile of sum lambda_i Z_i^2
    tokens_sorted: FloatArray
    latency_upper_ms: float
    latency_estimate_ms: float


def median_distance(x: FloatArray, seed: int, limit: int = 500) -> float:
    """The median pairwise Euclidean distance (the usual RBF bandwidth), on at most `limit` rows."""
    rng = np.random.default_rng(seed)
    rows = x if x.shape[0] <= limit else x[rng.choice(x.shape[0], limit, replace=False)]
    sq = np.sum(rows**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * rows @ rows.T, 0.0)
    upper = d2[np.triu_indices(rows.shape[0], k=1)]
    median = float(np.sqrt(np.median(upper))) if upper.size else 1.0
    return median if median > 0 else 1.0


def _saddlepoint_tail(lam: FloatArray, x: float) -> float:
    """P(sum lam_i Z_i^2 > x) by the Lugannani-Rice saddlepoint approximation (x above the mean).

    The cumulant generating function is K(t) = -1/2 sum log(1 - 2 t lam_i); its saddlepoint solves
    K'(s) = x. The relative error stays within a few percent far into the tail, where a simulation
    would need billions of draws (a 10 s cadence allows about 6e-7 per look).
    """
    t_max = 0.5 / float(lam.max())

    def k1(t: float) -> float:
        return float(np.sum(lam / (1.0 - 2.0 * t * lam)))

    s = optimize.brentq(lambda t: k1(t) - x, 0.0, t_max * (1.0 - 1e-12), xtol=1e-15, maxiter=500)
    k = -0.5 * float(np.sum(np.log1p(-2.0 * s * lam)))
    k2 = float(np.sum(2.0 * lam**2 / (1.0 - 2.0 * s * lam) ** 2))
    w = np.sqrt(max(2.0 * (s * x - k), 1e-300))
    u = s * np.sqrt(k2)
    return float(special.ndtr(-w) + np.exp(-0.5 * w * w) / np.sqrt(2.0 * np.pi) * (1.0 / u - 1.0 / w))


def weighted_chi2_quantile(eigenvalues: FloatArray, alpha: float) -> float:
    """The (1 - alpha) quantile of sum_i lambda_i Z_i^2, Z standard normal (saddlepoint, alpha < 0.5)."""
    lam = np.clip(np.asarray(eigenvalues, dtype=float), 0.0, None)
    if lam.size == 0 or lam.max() <= 0:
        return 0.0
    lam = lam[lam > 1e-12 * lam.max()]
    mean, sd = float(lam.sum()), float(np.sqrt(2.0 * np.sum(lam**2)))
    low, high = mean + 1e-3 * sd, mean + sd
    while _saddlepoint_tail(lam, high) > alpha:
        high = mean + 2.0 * (high - mean)
    target = np.log(alpha)
    return float(
        optimize.brentq(lambda x: np.log(_saddlepoint_tail(lam, x)) - target, low, high, xtol=1e-12 * mean)
    )


def _latency_quantile_bounds(latency_ms: FloatArray, q: float, alpha: float) -> tuple[float, float, float]:
    """(lower, upper, estimate) of the q-quantile from the latency histogram, each bound at `alpha`."""
    cumulative = np.searchsorted(np.sort(latency_ms), _BOUNDS_MS, side="right").astype(float)
    lower, upper, estimate = quantile_cs(_BOUNDS_MS, cumulative, float(latency_ms.size), q, alpha)
    return float(lower), float(upper), float(estimate)


def calibrate(policy: DriftPolicy, window: Window) -> Reference:
    """The reference for later windows: random features, their mean, the simulated null quantile."""
    if window.size < policy.reference_min_samples:
        raise DriftInputError(
            f"reference: {window.size} records, the policy needs at least {policy.reference_min_samples}"
        )
    ref = window.subsample(policy.reference_max_samples, policy.embedding.seed)
    alpha = policy.alpha_per_check
    features = mean = None
    noise = quantile = 0.0
    if policy.embedding.enabled:
        emb = policy.embedding
        rng = np.random.default_rng(emb.seed)
        bandwidth = emb.bandwidth or median_distance(ref.embeddings, emb.seed)
        features = RandomFeatures(
            rng.standard_normal((emb.features, ref.embeddings.shape[1])) / bandwidth,
            rng.uniform(0.0, 2.0 * np.pi, emb.features),
        )
        phi = features(ref.embeddings)
        mean = phi.mean(axis=0)
        eigenvalues = np.asarray(np.linalg.eigvalsh(np.cov(phi, rowvar=False)), dtype=float)
        noise = float(np.clip(eigenvalues, 0.0, None).sum())
        quantile = weighted_chi2_quantile(eigenvalues, alpha)
    unit = _unit_rows(ref.embeddings)
    direction = unit.mean(axis=0)
    direction /= max(float(np.linalg.norm(direction)), 1e-12)
    cosines = unit @ direction
    _, upper, estimate = _latency_quantile_bounds(ref.latency_ms, policy.latency.quantile, alpha / 2)
    return Reference(
        policy=policy,
        size=ref.size,
        dim=int(ref.embeddings.shape[1]),
        alpha=alpha,
        features=features,
        feature_mean=mean,
        noise_scale=noise,
        centroid=direction,
        centroid_mean=float(cosines.mean()),
        centroid_sd=float(cosines.std(ddof=1)),
        null_quantile=quantile,
        tokens_sorted=np.sort(ref.tokens),
        latency_upper_ms=upper,
        latency_estimate_ms=estimate,
    )


def _embedding_check(reference: Reference, window: Window) -> DriftCheck:
    assert reference.features is not None and reference.feature_mean is not None
    diff = reference.features(window.embeddings).mean(axis=0) - reference.feature_mean
    scaled = float(diff @ diff) / (1.0 / reference.size + 1.0 / window.size)
    noise = reference.noise_scale or 1.0
    # In units of the statistic's mean under no drift: about 1 for a window like the reference.
    statistic, threshold = scaled / noise, reference.null_quantile / noise
    return DriftCheck(
        name="embedding_mmd", statistic=statistic, threshold=threshold, drift=statistic > threshold,
        samples=window.size,
    )  # fmt: skip


def _unit_rows(x: FloatArray) -> FloatArray:
    return np.asarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), dtype=float)


def _centroid_check(reference: Reference, window: Window) -> DriftCheck:
    assert reference.centroid is not None
    mean = float((_unit_rows(window.embeddings) @ reference.centroid).mean())
    se = max(reference.centroid_sd, 1e-9) * np.sqrt(1.0 / reference.size + 1.0 / window.size)
    z = abs(mean - reference.centroid_mean) / se
    critical = float(special.ndtri(1.0 - reference.alpha / 2.0))
    threshold = max(critical, reference.policy.centroid.min_change / se)
    note = f"mean cosine to the reference centroid {mean:.3f} (reference {reference.centroid_mean:.3f})"
    return DriftCheck(name="embedding_centroid", statistic=z, threshold=threshold, drift=z > threshold,
                      samples=window.size, note=note)  # fmt: skip


def ks_distance(a_sorted: FloatArray, b: FloatArray) -> float:
    """sup |F_a - F_b| over all values (exact for ties)."""
    b_sorted = np.sort(b)
    points = np.concatenate([a_sorted, b_sorted])
    fa = np.searchsorted(a_sorted, points, side="right") / a_sorted.size
    fb = np.searchsorted(b_sorted, points, side="right") / b_sorted.size
    return float(np.max(np.abs(fa - fb)))


def _tokens_check(reference: Reference, window: Window) -> DriftCheck:
    n, m = reference.tokens_sorted.size, window.size
    distance = ks_distance(reference.tokens_sorted, window.tokens)
    critical = float(np.sqrt(-0.5 * np.log(reference.alpha / 2.0)) * np.sqrt((n + m) / (n * m)))
    threshold = max(critical, reference.policy.tokens.min_effect)
    return DriftCheck(name="tokens_ks", statistic=distance, threshold=threshold, drift=distance > threshold,
                      samples=m)  # fmt: skip


def _latency_check(reference: Reference, window: Window) -> DriftCheck:
    policy = reference.policy.latency
    lower, _, _ = _latency_quantile_bounds(window.latency_ms, policy.quantile, reference.alpha / 2)
    ratio = lower / reference.latency_upper_ms if np.isfinite(reference.latency_upper_ms) else 0.0
    threshold = 1.0 + policy.tolerance
    return DriftCheck(
        name=f"latency_p{policy.quantile * 100:g}".replace(".", "_"),
        statistic=ratio,
        threshold=threshold,
        drift=ratio > threshold,
        samples=window.size,
        note="window's lower bound over the reference's upper bound",
    )


def evaluate(reference: Reference, window: Window) -> DriftVerdict:
    """One look: every enabled check on the window; a window below `min_samples` decides nothing."""
    policy = reference.policy
    window = window.subsample(policy.max_samples, policy.embedding.seed + 2)
    names = []
    if policy.embedding.enabled:
        names.append("embedding_mmd")
    if policy.centroid.enabled:
        names.append("embedding_centroid")
    if policy.tokens.enabled:
        names.append("tokens_ks")
    if policy.latency.enabled:
        names.append(f"latency_p{policy.latency.quantile * 100:g}".replace(".", "_"))
    if window.size < policy.min_samples:
        note = f"{window.size} records in the window, the policy needs {policy.min_samples}"
        checks = [
            DriftCheck(name=n, statistic=None, threshold=None, drift=False, samples=window.size, note=note)
            for n in names
        ]
        return DriftVerdict(drift=False, checks=checks)
    if window.embeddings.shape[1] != reference.dim:
        raise DriftInputError(
            f"embedding: {window.embeddings.shape[1]} values per record, the reference has {reference.dim}"
        )
    checks = []
    if policy.embedding.enabled:
        checks.append(_embedding_check(reference, window))
    if policy.centroid.enabled:
        checks.append(_centroid_check(reference, window))
    if policy.tokens.enabled:
        checks.append(_tokens_check(reference, window))
    if policy.latency.enabled:
        checks.append(_latency_check(reference, window))
    return DriftVerdict(drift=any(c.drift for c in checks), checks=checks)
