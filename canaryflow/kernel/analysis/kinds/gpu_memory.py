"""GPU memory held by each version: a gauge read as it is (it spends no error budget)."""

from __future__ import annotations

from canaryflow.kernel.analysis.kinds.base import MetricKind
from canaryflow.kernel.analysis.kinds.gauge import gauge_evaluator

# Compared with the tolerance directly: the gauge is one number per arm, not a sample.
evaluate = gauge_evaluator(lambda arm: arm.gpu_memory)

KIND = MetricKind(
    name="gpu_memory",
    signal="gpu_memory",
    comparison="relative",
    statistical=False,
    quantiles=False,
    evaluate=evaluate,
    unit=lambda nbytes: f"{nbytes / 2**30:.2f} GiB",
    description="GPU memory gauge per version; tolerance relative to the baseline, no error budget",
)
