"""Prediction-log readers, one file per backend, found by name (`BACKENDS`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from canaryflow.adapters.predictions.jsonl import JsonlDirectoryReader, PredictionLogError, read_jsonl
from canaryflow.kernel.ports import PredictionLogReader

BACKENDS: dict[str, Callable[[Path], PredictionLogReader]] = {"jsonl": JsonlDirectoryReader}

__all__ = ["BACKENDS", "JsonlDirectoryReader", "PredictionLogError", "read_jsonl", "reader_for"]


def reader_for(backend: str, location: Path) -> PredictionLogReader:
    if backend not in BACKENDS:
        known = ", ".join(BACKENDS)
        raise ValueError(f"backend: unknown prediction-log backend {backend!r} (known: {known})")
    return BACKENDS[backend](location)
