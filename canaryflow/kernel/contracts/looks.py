"""The look grid: when a live analysis step looks at its metrics.

A step looks every `evaluate_every_s`, at `since + k * evaluate_every_s` (look k, counted from its
window's start `since`). The analysis steps start their windows on the grid of the multiples of
`evaluate_every_s` since the unix epoch (the first at or after the warm-up's end), so every rollout
with the same cadence looks at the same moments, and one range query with that step serves them all
(`canaryflow.adapters.metrics.batched`). Times are whole milliseconds here (a window start is
written as `%.3f` seconds), so the grid is exact integer arithmetic; a cadence that is not a whole
number of milliseconds has no grid, and a window then starts where it would have.
"""

from __future__ import annotations


def grid_ms(every_s: float) -> int | None:
    """The cadence in whole milliseconds, or None where it is not one (no shared grid)."""
    ms = round(every_s * 1000)
    return ms if ms > 0 and abs(ms - every_s * 1000) < 1e-6 else None


def on_look_grid(t: float, every_s: float) -> float:
    """The first grid time at or after `t` (rounded to the millisecond): a window's start."""
    every = grid_ms(every_s)
    if every is None:
        return t
    ms = round(t * 1000)
    return -(-ms // every) * every / 1000
