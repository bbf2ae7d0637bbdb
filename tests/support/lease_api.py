"""A local stand-in for the Kubernetes API server's Lease resource (`coordination.k8s.io/v1`), for the
leader election the controller runs in a cluster (controller/k8s_lease.py); the official `kubernetes`
client talks to it unchanged.

Wire format as the API server speaks it: the Lease object `{"apiVersion": "coordination.k8s.io/v1",
"kind": "Lease", "metadata": {name, namespace, resourceVersion, ...}, "spec": {holderIdentity,
leaseDurationSeconds, acquireTime, renewTime, leaseTransitions}}` (field names and MicroTime strings as
in the kubernetes Python client 37.0.3's generated `V1Lease`/`V1LeaseSpec`, which follow the Kubernetes
OpenAPI of k8s.io/api/coordination/v1); create is POST to the collection (409 `AlreadyExists` when the
name is taken), update is PUT to the object with the `metadata.resourceVersion` read (409 `Conflict`
when it changed since: optimistic concurrency), a missing object is 404 `NotFound`; errors are `Status`
objects.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/apis/coordination.k8s.io/v1/namespaces/"


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}  # fmt: skip


class LeaseApiServer:
    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.lock = threading.Lock()
        self.down = False  # the API server unreachable from the controllers (a partition)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self) -> tuple[str, str | None] | None:
                path = self.path.split("?")[0]
                if not path.startswith(PREFIX):
                    return None
                parts = path[len(PREFIX) :].split("/")
                if len(parts) == 2 and parts[1] == "leases":
                    return parts[0], None
                if len(parts) == 3 and parts[1] == "leases":
                    return parts[0], parts[2]
                return None

            def _body(self) -> dict[str, Any]:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")

            def _handle(self) -> None:
                if outer.down:
                    self.close_connection = True
                    self.connection.close()
                    return
                route = self._route()
                if route is None:
                    self._reply(404, _status(404, "NotFound", f"{self.path} not found"))
                    return
                namespace, name = route
                with outer.lock:
                    code, body = outer.answer(self.command, namespace, name, self)
                self._reply(code, body)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(
        self, method: str, namespace: str, name: str | None, request: Any
    ) -> tuple[int, dict[str, Any]]:
        if method == "GET" and name is not None:
            lease = self.leases.get((namespace, name))
            if lease is None:
                return 404, _status(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found')
            return 200, lease
        if method == "POST" and name is None:
            body = request._body()
            key = (namespace, body["metadata"]["name"])
            if key in self.leases:
                return 409, _status(
                    409, "AlreadyExists", f'leases.coordination.k8s.io "{key[1]}" already exists'
                )
            return 201, self._store(key, body)
        if method == "PUT" and name is not None:
            body = request._body()
            current = self.leases.get((namespace, name))
            if current is None:
                return 404, _status(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found')
            if body.get("metadata", {}).get("resourceVersion") != current["metadata"]["resourceVersion"]:
                why = "the object has been modified; please apply your changes to the latest version"
                return 409, _status(409, "Conflict", why)
            return 200, self._store((namespace, name), body)
        return 405, _status(405, "MethodNotAllowed", f"{method} not allowed")

    def _store(self, key: tuple[str, str], body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {**body.get("metadata", {}), "name": key[1], "namespace": key[0],
                         "resourceVersion": str(self.version)},
            "spec": {k: v for k, v in (body.get("spec") or {}).items() if v is not None},
        }  # fmt: skip
        self.leases[key] = lease
        return lease

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
