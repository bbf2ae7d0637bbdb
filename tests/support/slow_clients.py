"""Slow and greedy clients on real sockets, against a real server process (loopback only).

`check_slow_clients_are_cut_off` is what both servers (inference, controller) must pass when started
with a header deadline of `header_s`, a body deadline of `body_s` and at most `per_client`
connections from one address:
- a client sending part of its headers, a byte at a time, is closed within the header deadline;
- a client sending its headers and part of a body, a byte at a time, within the body deadline;
- `per_client` idle connections from 127.0.0.1 leave the next one from it a 503, while a client at
  another address (127.0.0.2: all of 127/8 is loopback on Linux) is served at once.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit


def _connect(url: str, source: str = "127.0.0.1") -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10, source_address=(source, 0))
    return sock


def _closed_within(sock: socket.socket, trickle: bytes, limit_s: float) -> float | None:
    """Sends `trickle` a byte every 0.2 s until the server closes the connection; the seconds that
    took, or None if it was still open after `limit_s`."""
    started = time.monotonic()
    sock.settimeout(0.2)
    for byte in trickle * 1000:
        if time.monotonic() - started > limit_s:
            return None
        try:
            sock.sendall(bytes([byte]))
        except OSError:  # reset by the server: closed
            return time.monotonic() - started
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return None


def _get(url: str, path: str, source: str) -> bytes:
    sock = _connect(url, source)
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data
    except ConnectionResetError:
        return b"reset"
    finally:
        sock.close()


def check_slow_clients_are_cut_off(
    url: str, post_path: str, header_s: float, body_s: float, per_client: int, alive: Callable[[], bool]
) -> None:
    slack = 4.0  # a loaded 2-core CI machine
    partial_headers = _connect(url)
    partial_headers.sendall(f"POST {post_path} HTTP/1.1\r\nHost: t\r\n".encode())
    took = _closed_within(partial_headers, b"X-Slow: a\r\n", header_s + slack)
    partial_headers.close()
    assert took is not None, f"a client trickling its headers was still connected after {header_s + slack} s"
    assert took >= header_s * 0.5, f"closed after {took:.1f} s, before the header deadline of {header_s} s"

    partial_body = _connect(url)
    head = (
        f"POST {post_path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        "Content-Length: 100000\r\n\r\n"
    )
    partial_body.sendall(head.encode() + b'{"input": "')
    took = _closed_within(partial_body, b"a", body_s + slack)
    partial_body.close()
    assert took is not None, f"a client trickling its body was still connected after {body_s + slack} s"
    assert alive()

    held = [_connect(url) for _ in range(per_client)]
    try:
        time.sleep(0.3)  # every one accepted and counted
        refused = _get(url, "/healthz", "127.0.0.1")
        assert refused.startswith(b"HTTP/1.1 503") and b"too many connections" in refused, refused[:200]
        other = _get(url, "/healthz", "127.0.0.2")
        assert other.startswith(b"HTTP/1.1 200"), other[:200]
        # The held connections send nothing: the header deadline closes them, and the client is
        # served again.
        deadline = time.monotonic() + header_s + slack
        while time.monotonic() < deadline:
            if _get(url, "/healthz", "127.0.0.1").startswith(b"HTTP/1.1 200"):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("idle connections were not closed by the header deadline")
    finally:
        for sock in held:
            sock.close()
    assert alive()
