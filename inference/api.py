"""Wire format of `POST /v1/embeddings` (OpenAI embeddings API) and its error bodies."""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError

try:
    import orjson

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)

except ImportError:  # pragma: no cover - orjson is a dependency; plain json keeps the server usable
    import json

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, default=lambda a: a.tolist()).encode()


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: StrictStr | list[StrictStr]
    model: StrictStr
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


class BadRequest(ValueError):
    """Client error: the message is the reason returned to the caller; `param` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def parse_request(body: bytes, max_inputs: int, max_input_chars: int) -> tuple[EmbeddingRequest, list[str]]:
    try:
        request = EmbeddingRequest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "json_invalid":
            raise BadRequest(f"body is not valid JSON: {first['msg']}") from None
        if first["type"] == "model_type":
            raise BadRequest("body must be a JSON object") from None
        if first["loc"] and first["loc"][0] == "input":
            index = next((p for p in first["loc"] if isinstance(p, int)), None)
            for error in exc.errors():  # the list branch's error names the offending item
                index = next((p for p in error["loc"] if isinstance(p, int)), index)
            if index is not None:
                raise BadRequest(f"input[{index}]: must be a string", "input") from None
            raise BadRequest("input: must be a string or a list of strings", "input") from None
        raise BadRequest(f"{where or 'body'}: {first['msg']}", param=where.split(".")[0] or None) from None
    texts = [request.input] if isinstance(request.input, str) else request.input
    if not texts:
        raise BadRequest("input: must not be an empty list", "input")
    if len(texts) > max_inputs:
        raise BadRequest(f"input: {len(texts)} texts, at most {max_inputs} per request", "input")
    for i, text in enumerate(texts):
        if not text:
            raise BadRequest(f"input[{i}]: must not be an empty string", "input")
        if len(text) > max_input_chars:
            raise BadRequest(f"input[{i}]: {len(text)} characters, at most {max_input_chars}", "input")
    return request, texts


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None) -> bytes:
    return dumps({"error": {"message": message, "type": kind, "param": param, "code": None}})


def embeddings_body(model: str, embeddings: np.ndarray, tokens: int, encoding: str) -> bytes:
    if encoding == "base64":
        rows: list[Any] = [base64.b64encode(row.astype("<f4").tobytes()).decode() for row in embeddings]
    else:
        rows = list(embeddings)
    return dumps(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
