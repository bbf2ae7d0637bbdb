"""Wire format of `POST /v1/embeddings` (OpenAI embeddings API): the request, its inputs, the answer.

Fields (docs/inference.md has the full table): `input` (a string, a list of strings, a list of token
ids, or a list of such lists), `model`, `encoding_format` (`float` | `base64`), `dimensions`
(shortened embeddings, only for models trained for it) and `user` (accepted, not used). Unknown
fields are ignored, as OpenAI's own server does for forward compatibility.

Inputs are checked in order and the first bad one is named (`input[3]: ...`), so a client fixing
its batch starts from the first problem, not the last.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from inference.openai_errors import ApiError, bad_request, dumps

__all__ = ["EmbeddingRequest", "Inputs", "dumps", "embeddings_body", "parse_request", "shorten"]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: Any  # str | list[str] | list[int] | list[list[int]]: checked by `_inputs`, item by item
    model: StrictStr
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(default=None, ge=1)
    user: StrictStr | None = None


@dataclass(frozen=True, slots=True)
class Inputs:
    """The request's inputs: texts, or token-id sequences (never both)."""

    texts: list[str] | None
    token_ids: list[list[int]] | None

    def __len__(self) -> int:
        return len(self.texts if self.texts is not None else self.token_ids or [])


@dataclass(frozen=True, slots=True)
class Limits:
    max_inputs: int
    max_input_chars: int


_INPUT_KINDS = "a string, a list of strings, a list of token ids or a list of token-id lists"


def parse_request(body: bytes, limits: Limits) -> tuple[EmbeddingRequest, Inputs]:
    try:
        request = EmbeddingRequest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "json_invalid":
            raise bad_request(f"body is not valid JSON: {first['msg']}", None) from None
        if first["type"] == "model_type":
            raise bad_request("body must be a JSON object", None) from None
        field = where.split(".")[0] or None
        raise bad_request(f"{where or 'body'}: {first['msg']}", field) from None
    return request, _inputs(request.input, limits)


def _inputs(value: Any, limits: Limits) -> Inputs:
    if isinstance(value, str):
        _check_text(0, value, limits)
        return Inputs([value], None)
    if not isinstance(value, list):
        raise bad_request(f"input: must be {_INPUT_KINDS}")
    if not value:
        raise bad_request("input: must not be an empty list")
    if _is_token(value[0]):  # one token-id sequence
        _check_ids(value, "input")
        return Inputs(None, [value])
    if len(value) > limits.max_inputs:
        raise ApiError(
            413, f"input: {len(value)} inputs, at most {limits.max_inputs} per request (max_inputs)",
            param="input", code="too_many_inputs",
        )  # fmt: skip
    if isinstance(value[0], list):
        for i, ids in enumerate(value):
            if not isinstance(ids, list):
                raise bad_request(f"input[{i}]: must be a list of token ids, as input[0] is")
            if not ids:
                raise bad_request(f"input[{i}]: must not be an empty list")
            _check_ids(ids, f"input[{i}]")
        return Inputs(None, value)
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise bad_request(f"input[{i}]: must be a string, as input[0] is")
        _check_text(i, text, limits)
    return Inputs(value, None)


def _is_token(item: Any) -> bool:
    return type(item) is int  # JSON true/false are bool, which Python also counts as int


def _check_ids(ids: list[Any], where: str) -> None:
    for j, token in enumerate(ids):
        if not _is_token(token) or token < 0:
            raise bad_request(f"{where}[{j}]: must be a token id (an integer >= 0)")


def _check_text(i: int, text: str, limits: Limits) -> None:
    if not text:
        raise bad_request(f"input[{i}]: must not be an empty string")
    if len(text) > limits.max_input_chars:
        raise bad_request(
            f"input[{i}]: {len(text)} characters, at most {limits.max_input_chars} (max_input_chars)"
        )


def shorten(embeddings: np.ndarray, dimensions: int) -> np.ndarray:
    """Matryoshka shortening: the first `dimensions` values, re-normalised to unit length."""
    head = embeddings[:, :dimensions]
    norms = np.linalg.norm(head, axis=1, keepdims=True)
    return (head / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def embeddings_body(model: str, embeddings: np.ndarray, tokens: int, encoding: str) -> bytes:
    usage = b'{"prompt_tokens":%d,"total_tokens":%d}' % (tokens, tokens)
    if encoding == "base64":
        # Written directly: each row's float32 bytes are base64-encoded from the array's own buffer
        # (no list of floats, no str round-trip), and there is nothing left for a JSON encoder to do.
        rows = np.ascontiguousarray(embeddings, dtype="<f4")
        parts = [b'{"object":"list","data":[']
        for i, row in enumerate(rows):
            parts.append(b'%s{"object":"embedding","index":%d,"embedding":"' % (b"," if i else b"", i))
            parts.append(base64.b64encode(memoryview(row)))
            parts.append(b'"}')
        parts.append(b'],"model":%s,"usage":%s}' % (dumps(model), usage))
        return b"".join(parts)
    data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(embeddings)]
    return dumps({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens,
                  "total_tokens": tokens}})  # fmt: skip
