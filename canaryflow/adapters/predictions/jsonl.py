"""The local JSON Lines prediction log, as the inference server writes it: `<dir>/<model>/
predictions-<start unix s>-<pid>.jsonl`, one record a line.

`read` answers a time range (a reference window, possibly in the past); `follow` returns what was
appended since its last call, remembering an offset per file, so a monitor polling every few seconds
parses each line once. A line still being written (no newline yet) is left for the next call.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
from pydantic import ValidationError

from canaryflow.adapters.predictions.common import (
    PredictionLogError,
    RangeReader,
    files_of,
    start_of,
    without_cycle_collection,
)
from canaryflow.kernel.contracts.drift import PREDICTION_FILE_GLOB, PredictionRecord
from canaryflow.kernel.errors import first_error
from canaryflow.kernel.guarded_input import InputRefused, open_regular_file


def parse_line(line: bytes, where: str) -> PredictionRecord:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise PredictionLogError(f"{where}: not JSON ({exc.args[0].split(':')[0]})") from exc
    if not isinstance(doc, dict):
        raise PredictionLogError(f"{where}: a record must be a JSON object")
    try:
        return PredictionRecord.model_validate(doc)
    except ValidationError as exc:
        raise PredictionLogError(f"{where}: {first_error(exc, 'record')}") from exc


@without_cycle_collection
def read_jsonl(path: Path) -> list[PredictionRecord]:
    """Every record of one file, strictly: the first bad line raises, naming its number and field."""
    try:
        with open_regular_file(path) as handle:  # a named pipe would hang the reader: refused at once
            data = handle.read()
    except InputRefused as exc:
        raise PredictionLogError(str(exc)) from exc
    except OSError as exc:
        raise PredictionLogError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    records = []
    for number, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            records.append(parse_line(line, f"{path}:{number}"))
    return records


class JsonlDirectoryReader(RangeReader):
    """Reads the files of one prediction-log directory; lines that are not records are skipped and
    counted (`skipped`), since one bad line must not blind the monitor."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.skipped = 0
        self._offsets: dict[Path, int] = {}

    def _files(self, model: str) -> list[Path]:
        return files_of(self.directory, model, PREDICTION_FILE_GLOB)

    @without_cycle_collection
    def _parse(self, chunk: bytes, path: Path) -> list[PredictionRecord]:
        records = []
        for line in chunk.splitlines():
            if not line.strip():
                continue
            try:
                records.append(parse_line(line, str(path)))
            except PredictionLogError:
                self.skipped += 1
        return records

    def records(
        self, model: str, start: float, end: float, version: str | None
    ) -> Iterator[PredictionRecord]:
        """The records of a range, file by file (`read` caps them; the local reader merges formats)."""
        for path in self._files(model):
            if start_of(path) >= end:
                continue
            try:
                if path.stat().st_mtime < start:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            complete = data[: data.rfind(b"\n") + 1]
            for r in self._parse(complete, path):
                wanted = version is None or r.version == version
                if r.model == model and start <= r.t < end and wanted:
                    yield r

    def follow(self, model: str, since: float | None = None) -> list[PredictionRecord]:
        records = []
        files = self._files(model)
        for path in files:
            if path not in self._offsets and since is not None:
                try:
                    stat = path.stat()
                except OSError:
                    continue
                if stat.st_mtime < since:  # a file last written before `since` is skipped unread
                    self._offsets[path] = stat.st_size
                    continue
            offset = self._offsets.get(path, 0)
            try:
                with path.open("rb") as handle:
                    handle.seek(offset)
                    data = handle.read()
            except OSError:
                continue
            complete = data[: data.rfind(b"\n") + 1]
            self._offsets[path] = offset + len(complete)
            records += [r for r in self._parse(complete, path) if r.model == model]
        for gone in [p for p in self._offsets if not p.exists()]:  # removed by the writer's retention
            del self._offsets[gone]
        return records
