"""One line for a validation failure: the first offending field and why, for CLIs and HTTP 4xx."""

from __future__ import annotations

from pydantic import ValidationError


def first_error(exc: ValidationError, where_default: str | None = "input") -> str:
    """`"<field.path>: <message>"` for the first error; with no field path, `where_default` names it
    (or, when None, the message stands alone)."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or where_default
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
