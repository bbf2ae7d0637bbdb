"""Slow and greedy clients, cut off below the ASGI app: request-read deadlines and a per-client bound.

uvicorn times out only an idle keep-alive connection (`timeout_keep_alive`, re-armed by every byte):
a connection that sends part of its headers, or its headers and part of a body, a byte now and then,
stays open for ever (uvicorn issue #157, "--timeout-request-start", still open), and an ASGI
middleware cannot help, since it runs only once the headers are parsed. 8,300 such connections from
one client took every slot of `limit_concurrency`: every other caller got 503 until they closed.

`guarded_protocol` wraps uvicorn's HTTP protocol class (httptools or h11, whichever serves) with:
- a header deadline: from the connection's first byte (or its opening) and from the first byte of
  each next request on a kept-alive connection, the headers must be complete within
  `header_timeout_s`;
- a body deadline: once the headers are in, the body must be complete within `body_timeout_s`;
- a per-client bound: at most `per_client` connections open from one address at once; the next is
  answered 503 and closed before it is read, so one client cannot take the slots of all others.
The deadline is disarmed as soon as the request is read: a slow response (a long batch) is never cut.
On expiry the connection is closed (no response: the client is not reading one).

The inference server and the controller both serve through it (`inference.runner`,
`controller.service`); this module imports nothing of the inference server but uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("canaryflow.http")

_BUSY_BODY = b'{"error": "too many connections from this client; retry later"}'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    per_client: int = 256


def base_protocol(name: str) -> type[asyncio.Protocol]:
    """uvicorn's protocol class for an `http` setting ("auto", "h11", "httptools")."""
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    protocol: type[asyncio.Protocol] = import_from_string(HTTP_PROTOCOLS[name])
    return protocol


def guarded_protocol(name: str, limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's `name` protocol enforcing `limits`; pass it as uvicorn's `http`.
    Connections are counted per server process (each worker process has its own bound)."""
    base: Any = base_protocol(name)
    open_by_client: dict[str, int] = {}

    class GuardedProtocol(base):
        _deadline: asyncio.TimerHandle | None = None
        _client_key: str | None = None
        _before: object = None  # the request cycle current when the header deadline was armed
        _in_body = False

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            peer = transport.get_extra_info("peername")
            key = str(peer[0]) if isinstance(peer, tuple) and peer else "local"
            if open_by_client.get(key, 0) >= limits.per_client:
                log.warning("connection from %s refused: %d open (per-client bound)", key, limits.per_client)
                # Answered, then half-closed: closing with the request unread would reset the
                # connection and lose the answer; what it sends is discarded, for a second at most.
                transport.write(_BUSY)
                if transport.can_write_eof():
                    transport.write_eof()
                self.loop.call_later(1.0, transport.close)
                return
            open_by_client[key] = open_by_client.get(key, 0) + 1
            self._client_key = key
            self._arm_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            key = self._client_key
            if key is not None:
                self._client_key = None
                left = open_by_client.get(key, 1) - 1
                if left > 0:
                    open_by_client[key] = left
                else:
                    open_by_client.pop(key, None)
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._client_key is None:  # refused by the bound: nothing is parsed
                return
            if self._deadline is None:  # the first byte of a next request on a kept-alive connection
                self._arm_headers()
            super().data_received(data)
            cycle = getattr(self, "cycle", None)
            if cycle is None or cycle is self._before:
                return  # still reading headers
            if getattr(cycle, "more_body", False):
                if not self._in_body:
                    self._in_body = True
                    self._arm(limits.body_timeout_s, "body")
                return
            self._disarm()  # the request is read: the response may take as long as it takes
            self._before = cycle

        def _arm_headers(self) -> None:
            self._before = getattr(self, "cycle", None)
            self._in_body = False
            self._arm(limits.header_timeout_s, "headers")

        def _arm(self, seconds: float, part: str) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expire, part, seconds)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self, part: str, seconds: float) -> None:
            self._deadline = None
            transport = getattr(self, "transport", None)
            if transport is not None and not transport.is_closing():
                log.info("connection from %s closed: request %s not read within %.1f s",
                         self._client_key, part, seconds)  # fmt: skip
                transport.close()

    GuardedProtocol.__name__ = GuardedProtocol.__qualname__ = f"Guarded{base.__name__}"
    return GuardedProtocol
