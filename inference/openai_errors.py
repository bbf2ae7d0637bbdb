"""Every error the server answers, in OpenAI's error shape.

`{"error": {"message", "type", "param", "code"}}` on every 4xx and 5xx, including unknown routes,
wrong methods and the admission-control refusals (413, 429), so that an OpenAI client raises its own
typed exception (BadRequestError, NotFoundError, RateLimitError, ...) with a readable message instead
of failing to parse a plain-text body. `type` and `code` take OpenAI's values where OpenAI has one
(`invalid_request_error`, `model_not_found`, `context_length_exceeded`, `rate_limit_exceeded`).
"""

from __future__ import annotations

from typing import Any

try:
    import orjson

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)

except ImportError:  # pragma: no cover - orjson is a dependency; plain json keeps the server usable
    import json

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, default=lambda a: a.tolist()).encode()


INVALID = "invalid_request_error"
SERVER = "server_error"
RATE_LIMIT = "rate_limit_error"

# Default `type` and `code` of a status when the raiser gives none (routing 404/405 and the like).
_BY_STATUS: dict[int, tuple[str, str | None]] = {
    400: (INVALID, None),
    404: (INVALID, "not_found"),
    405: (INVALID, "method_not_allowed"),
    408: (INVALID, "timeout"),
    413: (INVALID, "request_too_large"),
    422: (INVALID, None),
    429: (RATE_LIMIT, "rate_limit_exceeded"),
    500: (SERVER, None),
    503: (SERVER, "service_unavailable"),
    504: (SERVER, "timeout"),
}


class ApiError(Exception):
    """A refusal: the HTTP status, the reason shown to the caller, and which field it is about."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        default_kind, default_code = _BY_STATUS.get(status, (SERVER if status >= 500 else INVALID, None))
        self.status = status
        self.message = message
        self.param = param
        self.code = code if code is not None else default_code
        self.kind = kind or default_kind
        self.retry_after = retry_after

    def body(self) -> bytes:
        return error_body(self.message, self.kind, self.param, self.code)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


def bad_request(message: str, param: str | None = "input", code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def error_body(message: str, kind: str = INVALID, param: str | None = None, code: str | None = None) -> bytes:
    return dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})
