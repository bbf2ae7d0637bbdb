"""A local stand-in for the Kubernetes API server: answers GET on the real REST paths with the JSON
bodies a test registers (404 with a `Status` object otherwise), and records every request path.

For what cannot run here (no cluster): the official `kubernetes` client talks to it unchanged.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def not_found(path: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"{path} not found",
        "reason": "NotFound",
        "code": 404,
    }


class KubeApiServer:
    def __init__(self) -> None:
        self.requests: list[str] = []
        self.routes: dict[str, tuple[int, dict[str, Any]]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                path = self.path.split("?")[0]
                status, body = outer.routes.get(path, (404, not_found(path)))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, path: str, body: dict[str, Any], status: int = 200) -> None:
        self.routes[path] = (status, body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
