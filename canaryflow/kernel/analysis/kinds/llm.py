"""LLM-serving kinds (the quantities vLLM names), judged with the same confidence sequences, levels and
error budget as request latency:

- `time_to_first_token`, `time_per_output_token` (inter-token latency), `e2e_latency`: quantiles of the
  producer's histograms, relative to the baseline, lower is better (as `latency`);
- `output_tokens_per_s`: a request's decode speed, 1 / its time per output token, so its q-quantile
  is 1 / the (1 - q)-quantile of that histogram and its bounds are those bounds inverted; higher is
  better. (Aggregate throughput, a counter's rate, follows each arm's share of traffic and says nothing
  about a version: it is not compared.)
- `finish_reason`: the share of finished requests that ended for one of the metric's `finish_reasons`
  (e.g. `length`: cut off at max tokens; `abort`), a difference of rates like `error_rate`.
"""

from __future__ import annotations

from canaryflow.kernel.analysis.kinds import error_rate, latency
from canaryflow.kernel.analysis.kinds.base import CheckSeries, Levels, MetricKind, MetricSpec
from canaryflow.kernel.analysis.series import ObservationSeries


def _tokens_per_second(metric: MetricSpec, series: ObservationSeries, levels: Levels) -> list[CheckSeries]:
    return latency.quantile_checks(metric, series, levels, reciprocal=True)


def _latency_kind(name: str, what: str) -> MetricKind:
    return MetricKind(
        name=name,
        comparison="relative",
        statistical=True,
        quantiles=True,
        evaluate=latency.evaluate,
        unit=latency.milliseconds,
        description=f"{what} quantiles (the producer's histogram); tolerance relative to the baseline",
        signal=name,
        direction="lower_is_better",
    )


TIME_TO_FIRST_TOKEN = _latency_kind("time_to_first_token", "time to first token")
TIME_PER_OUTPUT_TOKEN = _latency_kind("time_per_output_token", "time per output token (inter-token latency)")
E2E_LATENCY = _latency_kind("e2e_latency", "end-to-end request latency")
OUTPUT_TOKENS_PER_S = MetricKind(
    name="output_tokens_per_s",
    comparison="relative",
    statistical=True,
    quantiles=True,
    evaluate=_tokens_per_second,
    unit=lambda rate: f"{rate:.1f} tok/s",
    description="per-request decode speed (1 / time per output token); tolerance a relative decrease",
    signal="time_per_output_token",
    direction="higher_is_better",
)
FINISH_REASON = MetricKind(
    name="finish_reason",
    comparison="difference",
    statistical=True,
    quantiles=False,
    evaluate=error_rate.evaluate,
    unit=lambda rate: f"{rate:.2%}",
    description="finished requests ending for one of `finish_reasons`; tolerance a difference of rates",
    signal="finish_reason",
    direction="lower_is_better",
)
KINDS = (TIME_TO_FIRST_TOKEN, TIME_PER_OUTPUT_TOKEN, E2E_LATENCY, OUTPUT_TOKENS_PER_S, FINISH_REASON)
