"""What every prediction-log backend shares: the error type, a model's folder and file order, and the
uniform cap of a time range."""

from __future__ import annotations

import functools
import gc
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

from canaryflow.kernel.contracts.drift import PredictionRecord, model_folder_name, prediction_file_start

P = ParamSpec("P")
R = TypeVar("R")


class PredictionLogError(ValueError):
    """A prediction-log file or line that is not records; the message names the file, line and field."""


def model_folder(directory: Path, model: str) -> Path:
    return directory / model_folder_name(model)


def start_of(path: Path) -> float:
    """The start time in `predictions-<start>-<pid>.<ext>` (0 when the name has none)."""
    return prediction_file_start(path.name)


def files_of(directory: Path, model: str, pattern: str) -> list[Path]:
    folder = model_folder(directory, model)
    return sorted(folder.glob(pattern), key=start_of) if folder.is_dir() else []


def without_cycle_collection(build: Callable[P, R]) -> Callable[P, R]:
    """Run `build` with the cycle collector paused. Records are built by the hundred thousand, each
    with a list of hundreds of floats: millions of new containers and no reference cycles, which the
    collector would otherwise rescan again and again (half the time of reading 100,000 records,
    bench/prediction_log.py). Refcounting still frees everything; the collector is switched back on
    by whoever switched it off, so nested or concurrent reads leave it as they found it."""

    @functools.wraps(build)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return build(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return paused


class RangeReader:
    """`read` for a backend that yields a range's records (`records`): capped to a uniform sample."""

    def records(
        self, model: str, start: float, end: float, version: str | None
    ) -> Iterator[PredictionRecord]:
        raise NotImplementedError

    def read(
        self, model: str, start: float, end: float, *, version: str | None = None, limit: int | None = None
    ) -> list[PredictionRecord]:
        return sample_range(self.records(model, start, end, version), limit, f"{model}/{version}/{start}")


def sample_range(records: Iterable[PredictionRecord], limit: int | None, seed: str) -> list[PredictionRecord]:
    """Every record, or beyond `limit` a uniform sample (reservoir: one pass, `limit` kept), by time."""
    kept: list[PredictionRecord] = []
    rng = random.Random(seed)
    for seen, record in enumerate(records, start=1):
        if limit is None or len(kept) < limit:
            kept.append(record)
        elif (slot := rng.randrange(seen)) < limit:
            kept[slot] = record
    return sorted(kept, key=lambda r: r.t)
