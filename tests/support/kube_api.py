"""A local stand-in for the Kubernetes API server: answers GET on the real REST paths with the JSON
bodies a test registers (404 with a `Status` object otherwise), and records every request path; POST
and PATCH are answered by handlers a test registers (what the API server would compute).

For what cannot run here (no cluster): the official `kubernetes` client talks to it unchanged.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KSERVE_VERSION_LABEL = "canaryflow.io/version"


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
        # (method, path or "*") -> handler(path, query, body) -> (status, body), for POST and PATCH.
        self.handlers: dict[tuple[str, str], Callable[[str, str, Any], tuple[int, dict[str, Any]]]] = {}
        self.writes: list[tuple[str, str, str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                path = self.path.split("?")[0]
                status, body = outer.routes.get(path, (404, not_found(path)))
                self._reply(status, body)

            def _write(self) -> None:
                """POST/PATCH: a registered handler answers from the decoded body and the query."""
                outer.requests.append(self.path)
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.writes.append((self.command, self.path, self.headers.get("Content-Type", ""), body))
                handler = outer.handlers.get((self.command, path)) or outer.handlers.get((self.command, "*"))
                status, reply = handler(path, query, body) if handler else (404, not_found(path))
                self._reply(status, reply)

            do_POST = _write
            do_PATCH = _write

            def _reply(self, status: int, body: dict[str, Any]) -> None:
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


def serverless_reconciled(
    server: KubeApiServer,
    isvc: dict[str, Any],
    previous_version: str,
    latest_ready: bool = True,
) -> dict[str, Any]:
    """`isvc` (KServe Serverless) with the status KServe writes once reconciled, its two Knative
    revisions served beside it: `-00001`, the last rolled-out one (serving `previous_version`), and
    `-00002`, created from the current predictor (its labels, as KServe copies them onto the revision).

    The traffic split is what KServe asks of Knative: `canaryTrafficPercent` to the latest ready revision,
    the rest to the last rolled-out one; while the latest is not ready, Knative resolves "latest" to the
    last ready revision, so its share goes to the previous version too.
    """
    name, namespace = isvc["metadata"]["name"], isvc["metadata"]["namespace"]
    predictor = isvc["spec"]["predictor"]
    previous, latest = f"{name}-predictor-00001", f"{name}-predictor-00002"
    for revision, labels in (
        (previous, {KSERVE_VERSION_LABEL: previous_version}),
        (latest, dict(predictor.get("labels", {}))),
    ):
        server.serve(
            f"/apis/serving.knative.dev/v1/namespaces/{namespace}/revisions/{revision}",
            {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Revision",
                "metadata": {
                    "name": revision,
                    "namespace": namespace,
                    "labels": {
                        **labels,
                        "serving.kserve.io/inferenceservice": name,
                        "component": "predictor",
                    },
                },
            },
        )
    ready = latest if latest_ready else previous
    percent = int(predictor.get("canaryTrafficPercent", 100))
    traffic = [{"latestRevision": True, "percent": percent, "revisionName": ready, "tag": "latest"}]
    if percent < 100:
        traffic.append(
            {"latestRevision": False, "percent": 100 - percent, "revisionName": previous, "tag": "prev"}
        )
    status = {
        "observedGeneration": 1,
        "components": {
            "predictor": {
                "latestCreatedRevision": latest,
                "latestReadyRevision": ready,
                "latestRolledoutRevision": previous,
                "traffic": traffic,
            }
        },
    }
    return {**isvc, "status": status}
