"""A local HTTP endpoint that records what it is sent (headers, body) and can refuse the first N (503),
keeping those refused attempts apart."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    def __init__(self, fail_first: int = 0, status: int = 200, reply: bytes = b"{}", port: int = 0) -> None:
        """`port`: 0 for any free one; a given one brings a stopped receiver back at its old address."""
        self.requests: list[Received] = []
        self.refused: list[Received] = []
        self.fail_first, self.status, self.reply = fail_first, status, reply
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with owner._lock:
                    refuse = owner.fail_first > 0
                    owner.fail_first -= 1 if refuse else 0
                    got = owner.refused if refuse else owner.requests
                    got.append(Received(self.path, headers, body))
                self.send_response(503 if refuse else owner.status)
                self.send_header("content-length", str(len(owner.reply)))
                self.end_headers()
                self.wfile.write(owner.reply)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")

    def refuse(self, count: int) -> None:
        """Answers the next `count` requests with 503 (0: accepts from now on)."""
        with self._lock:
            self.fail_first = count

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
