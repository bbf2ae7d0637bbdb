"""A traffic step's history written from a producer's exposition fixture: the fixture's own family
names, label sets and bucket bounds (fixtures/*.prom, see PROVENANCE.md), filled with synthetic
requests per arm, one sample per look, as OpenMetrics text for `promtool tsdb create-blocks-from
openmetrics`. Nothing here knows what the providers query: a name or label that drifts from what a
provider expects shows up as the analysis finding no data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from canaryflow.kernel.contracts.providers import ARM_MODEL_LABEL, ARM_VERSION_LABEL

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Where a family carries the arm's model and version itself; every other producer is told apart by the
# target labels the PodMonitor copies from the pod (ARM_MODEL_LABEL, ARM_VERSION_LABEL).
OWN_ARM_LABELS = {
    "canaryflow": ("model", "version"),
    "istio": ("destination_canonical_service", "destination_canonical_revision"),
}


@dataclass(frozen=True)
class Histogram:
    name: str
    labels: dict[str, str]
    le: list[str]  # as the producer writes them ("100", "0.005", "2.5e-05")
    weight: float  # share of requests this label set counts (its +Inf count over the family's)


@dataclass(frozen=True)
class Counter:
    sample: str  # the sample name as exposed (with or without `_total`)
    labels: dict[str, str]
    weight: float  # share of requests counted by this label set


def read_fixture(provider: str) -> tuple[list[Histogram], list[Counter]]:
    text = (FIXTURES / f"{provider}.prom").read_text()
    histograms: list[Histogram] = []
    counters: list[Counter] = []
    for family in text_string_to_metric_families(text):
        if family.type == "histogram":
            sets: dict[tuple[tuple[str, str], ...], tuple[list[str], float]] = {}
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                    les, inf = sets.get(key, ([], 0.0))
                    if s.labels["le"] == "+Inf":
                        inf = float(s.value)
                    else:
                        les.append(_le_text(text, family.name, s.labels["le"]))
                    sets[key] = (les, inf)
            total = sum(inf for _, inf in sets.values()) or 1.0
            histograms += [
                Histogram(family.name, dict(k), les, inf / total) for k, (les, inf) in sets.items()
            ]
        elif family.type == "counter":
            total = sum(float(s.value) for s in family.samples if not s.name.endswith("_created")) or 1.0
            counters += [
                Counter(_raw_name(text, s.name), dict(s.labels), float(s.value) / total)
                for s in family.samples
                if not s.name.endswith("_created")
            ]
    return histograms, counters


def _raw_name(text: str, parsed: str) -> str:
    """The counter's sample name as the producer writes it: the parser adds `_total` where the producer
    (Triton's prometheus-cpp, TEI's Rust exporter) has none."""
    lines = text.splitlines()
    if any(line.startswith((f"{parsed}{{", f"{parsed} ")) for line in lines):
        return parsed
    return parsed.removesuffix("_total")


def _le_text(text: str, family: str, parsed: str) -> str:
    """The bound as the fixture writes it (the parser normalises `100` to `100.0`)."""
    for line in text.splitlines():
        if line.startswith(f"{family}_bucket{{") and 'le="' in line:
            raw = line.split('le="', 1)[1].split('"', 1)[0]
            if raw != "+Inf" and float(raw) == float(parsed):
                return raw
    return parsed


@dataclass(frozen=True)
class Arm:
    version: str
    slowdown: float  # every latency of this arm multiplied by it
    families: frozenset[str] | None = None  # histogram families it exports (None: all the fixture's)


def history(
    provider: str,
    model: str,
    arms: Iterable[Arm],
    times: np.ndarray,
    rate_per_arm: float,
    seed: int,
) -> list[str]:
    """OpenMetrics lines (no `# EOF`) of `provider`'s families for `model`, one sample per time."""
    histograms, counters = read_fixture(provider)
    rng = np.random.default_rng(seed)
    model_label, version_label = OWN_ARM_LABELS.get(provider, (ARM_MODEL_LABEL, ARM_VERSION_LABEL))
    start, end = float(times[0]), float(times[-1])
    lines: list[str] = []
    typed: set[str] = set()
    for arm in arms:
        n = int(rng.poisson(rate_per_arm * (end - start)))
        t = np.sort(rng.uniform(start, end, n))
        spread = rng.lognormal(0.0, 0.6, n)  # one draw per request, the same in every histogram
        served = np.searchsorted(t, times, side="right")  # requests by each time
        for h in histograms:
            if arm.families is not None and h.name not in arm.families:
                continue
            bounds = np.array([float(b) for b in h.le])
            values = bounds[len(bounds) // 3] * spread * arm.slowdown
            labels = {**h.labels, model_label: model, version_label: arm.version}
            if h.name not in typed:
                lines.append(f"# TYPE {h.name} histogram")
                typed.add(h.name)
            for at, k in zip(times, served, strict=True):
                seen = np.sort(values[:k])
                count = round(k * h.weight)
                counts = np.searchsorted(seen, bounds, side="right") * h.weight
                for le, c in zip(h.le, counts, strict=True):
                    lines.append(f'{h.name}_bucket{{{_labels(labels)},le="{le}"}} {round(c)} {at:.3f}')
                lines.append(f'{h.name}_bucket{{{_labels(labels)},le="+Inf"}} {count} {at:.3f}')
                lines.append(f"{h.name}_count{{{_labels(labels)}}} {count} {at:.3f}")
                lines.append(f"{h.name}_sum{{{_labels(labels)}}} {seen.sum() * h.weight:.6f} {at:.3f}")
        for c in counters:
            labels = {**c.labels, model_label: model, version_label: arm.version}
            if c.sample not in typed:
                lines.append(f"# TYPE {c.sample} unknown")
                typed.add(c.sample)
            for at, k in zip(times, served, strict=True):
                lines.append(f"{c.sample}{{{_labels(labels)}}} {round(k * c.weight)} {at:.3f}")
    return lines


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
