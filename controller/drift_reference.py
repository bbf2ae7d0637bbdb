"""A champion's drift reference set by the user (`PUT /models/{name}/drift/reference`), and where it is
kept so that it survives a controller restart.

The request names a span of the model's own prediction log (`since`, `until`, optionally another
`version` than the champion's); the monitor reads the span, recalibrates exactly as for a captured
reference, and the records it used are saved, not the span: the servers' retention may delete the
span's files long before the champion changes. A reference belongs to the champion version it was
set for; once another version is champion it is ignored (and the monitor captures a new one).

Storage: `<db stem>-drift-references/<model>/<champion version>.json` beside the controller's
database, one JSON document written to a temporary name and renamed, so a crash leaves the previous
reference or the new one, never half of one; the version in the name lets the monitor, polling while
a new champion collects its own reference, see that none was set for it without parsing anything.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from canaryflow.kernel.contracts.drift import PredictionRecord
from canaryflow.kernel.guarded_input import InputRefused, read_regular_file
from canaryflow.kernel.ports import PredictionLogReader

# A saved reference holds up to a policy's reference_max_samples embeddings as JSON: tens of MB.
MAX_REFERENCE_FILE_BYTES = 1 << 30
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


class ReferenceRequest(BaseModel):
    """The body of `PUT /models/{name}/drift/reference`."""

    model_config = ConfigDict(extra="forbid")

    since: Annotated[float, Field(ge=0, description="unix seconds, start of the span (inclusive)")]
    until: Annotated[float, Field(gt=0, description="unix seconds, end of the span (exclusive)")]
    version: Annotated[
        str | None, Field(default=None, min_length=1, description="whose records; default the champion")
    ] = None

    @field_validator("until")
    @classmethod
    def _after_since(cls, until: float, info: ValidationInfo) -> float:
        since = info.data.get("since")
        if since is not None and until <= since:
            raise ValueError("must be after since")
        return until


class SavedReference(BaseModel):
    """A user-set reference as kept on disk: the request, the champion it was set for, the records."""

    model: str
    champion_version: str
    version: str
    since: float
    until: float
    set_at: float
    records: list[PredictionRecord]


class ReferenceShelf:
    """User-set references, one file a model."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @classmethod
    def beside(cls, db_path: Path) -> ReferenceShelf:
        return cls(db_path.with_name(f"{db_path.stem}-drift-references"))

    def _path(self, model: str, champion_version: str) -> Path:
        return self.directory / _SAFE_NAME.sub("_", model) / f"{_SAFE_NAME.sub('_', champion_version)}.json"

    def save(self, saved: SavedReference) -> None:
        path = self._path(saved.model, saved.champion_version)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temp.write_bytes(orjson.dumps(saved.model_dump(mode="json")))
        os.replace(temp, path)
        for older in path.parent.glob("*.json"):  # earlier champions' references serve no one now
            if older != path:
                older.unlink(missing_ok=True)

    def load(self, model: str, champion_version: str) -> SavedReference | None:
        """The reference set for this champion version, or None (none set, or a file that cannot be
        read: the monitor then captures one as if none had been set)."""
        path = self._path(model, champion_version)
        if not path.is_file():
            return None
        try:
            raw = read_regular_file(path, MAX_REFERENCE_FILE_BYTES)
            saved = SavedReference.model_validate(orjson.loads(raw))
        except (InputRefused, orjson.JSONDecodeError, ValidationError):
            return None
        return saved if saved.champion_version == champion_version and saved.model == model else None


def read_span(
    reader: PredictionLogReader, limit: int, champion: str, model: str, request: ReferenceRequest, now: float
) -> SavedReference:
    """The records of the requested span (a uniform sample above `limit`), ready to be kept; a span
    reaching into the future is refused naming `until`, since its records cannot exist yet."""
    if request.until > now:
        raise ValueError(f"until: {request.until:.0f} is in the future (now {now:.0f})")
    version = request.version or champion
    records = reader.read(model, request.since, request.until, version=version, limit=limit)
    return SavedReference(
        model=model,
        champion_version=champion,
        version=version,
        since=request.since,
        until=request.until,
        set_at=now,
        records=records,
    )


def api_source(saved: SavedReference) -> str:
    """How `GET /models/{name}/drift` names a reference set through the API."""
    return f"span of version {saved.version} set through the API"
