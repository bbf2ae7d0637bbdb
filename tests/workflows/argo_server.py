"""A local HTTP server speaking the Argo Server REST paths Hera's WorkflowsService calls.

It keeps created Workflows in memory, answers with Workflow JSON shaped like Argo's (metadata, spec,
status with nodes keyed by node id), records every request for the tests to check, and applies
resume / stop / suspend / retry the way the Argo Server and the workflow controller would:
- resume with `nodeFieldSelector` completes the matching waiting suspend node; without one it clears
  `spec.suspend` and completes every waiting suspend node (`workflow/util/util.go: ResumeWorkflow`);
- suspend sets `spec.suspend` and refuses a completed workflow (`SuspendWorkflow`: "cannot suspend
  completed workflows");
- stop marks the workflow Failed with Argo's "Stopped with strategy 'Stop'" message;
- retry (`FormulateRetryWorkflow`) is refused unless the workflow is Failed or Error; it drops the
  failed Pod nodes and, with `restartSuccessful`, the nodes the `nodeFieldSelector` matches and every
  node after them in the DAG (`resetPath`), drops the `<name>.onExit` nodes, overrides
  `spec.arguments.parameters` from `parameters` ("name=value"), clears `spec.shutdown` and the
  message, and leaves the phase unknown ("") for the workflow controller to run it again.
Routes and request bodies: Argo Workflows `api/openapi-spec/swagger.json` and `workflow/util/util.go`
at commit f016ad89eb269d282aec06dc491c29f396a38df4 (github.com/argoproj/argo-workflows). Which nodes
come "after" is the test's to say: `set_nodes` takes a node's `children` (display names), as Argo's
node status lists them.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class FakeArgo:
    token: str
    requests: list[Recorded] = field(default_factory=list)
    workflows: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""
    # The server's lint: returns the reason a workflow is refused, or "" (tests plug in the schema).
    lint: Callable[[dict[str, Any]], str] = lambda _doc: ""

    def set_nodes(self, name: str, phase: str, nodes: list[dict[str, Any]], message: str = "") -> None:
        """Puts the workflow in the state the Argo controller would report (tests drive it)."""
        status = self.workflows[name].setdefault("status", {})
        status.update({"phase": phase, "startedAt": "2026-11-23T16:00:00Z", "message": message})
        status["nodes"] = {
            f"{name}-{i}": {"id": f"{name}-{i}", "name": f"{name}.{n['displayName']}", **n}
            for i, n in enumerate(nodes)
        }


def _handler(state: FakeArgo) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, code: int, doc: dict[str, Any]) -> None:
            raw = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            path = self.path.split("?", 1)[0]
            state.requests.append(Recorded(method, path, dict(self.headers.items()), body))
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                self._reply(401, {"code": 16, "message": "token not valid"})
                return
            self._route(method, path, body or {})

        def _route(self, method: str, path: str, body: dict[str, Any]) -> None:
            if m := re.fullmatch(r"/api/v1/workflow-templates/([^/]+)", path):
                name = body["template"]["metadata"]["name"]
                if method != "POST":
                    self._reply(405, {"message": "method not allowed"})
                elif name in state.templates:
                    self._reply(409, {"code": 6, "message": f'workflowtemplates "{name}" already exists'})
                else:
                    state.templates[name] = {
                        **body["template"],
                        "metadata": {**body["template"]["metadata"], "namespace": m.group(1), "uid": "t-1"},
                    }
                    self._reply(200, state.templates[name])
                return
            if method == "POST" and re.fullmatch(r"/api/v1/workflows/([^/]+)/lint", path):
                problem = state.lint(body["workflow"])
                if problem:
                    self._reply(400, {"code": 3, "message": problem})
                else:
                    self._reply(200, body["workflow"])
                return
            if m := re.fullmatch(r"/api/v1/workflows/([^/]+)", path):
                wf = body["workflow"]
                name = wf["metadata"]["name"]
                if name in state.workflows:
                    self._reply(409, {"code": 6, "message": f'workflows.argoproj.io "{name}" already exists'})
                    return
                wf["metadata"].update({"namespace": m.group(1), "uid": "w-1", "resourceVersion": "1"})
                wf["status"] = {}
                state.workflows[name] = wf
                self._reply(200, wf)
                return
            if m := re.fullmatch(r"/api/v1/workflows/([^/]+)/([^/]+)(/resume|/stop|/suspend|/retry)?", path):
                name = m.group(2)
                wf = state.workflows.get(name)
                if wf is None:
                    self._reply(404, {"code": 5, "message": f'workflows.argoproj.io "{name}" not found'})
                    return
                action = m.group(3)
                phase = wf.get("status", {}).get("phase")
                if action == "/resume":
                    selector = body.get("nodeFieldSelector", "")
                    key, _, value = selector.partition("=")
                    if not selector:
                        wf["spec"].pop("suspend", None)
                    for node in wf.get("status", {}).get("nodes", {}).values():
                        waiting = node.get("type") == "Suspend" and node.get("phase") == "Running"
                        if waiting and (not selector or node.get(key) == value):
                            node["phase"] = "Succeeded"
                elif action == "/suspend":
                    if phase in ("Succeeded", "Failed", "Error"):
                        self._reply(400, {"code": 9, "message": "cannot suspend completed workflows"})
                        return
                    wf["spec"]["suspend"] = True
                elif action == "/retry":
                    if phase not in ("Failed", "Error"):
                        self._reply(400, {"code": 9, "message": f"Cannot retry a workflow in phase {phase}"})
                        return
                    _retry(wf, body)
                elif action == "/stop":
                    wf.setdefault("status", {}).update(
                        {"phase": "Failed", "message": "Stopped with strategy 'Stop'"}
                    )
                self._reply(200, wf)
                return
            self._reply(404, {"code": 5, "message": f"no route {path}"})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

    return Handler


def _retry(wf: dict[str, Any], body: dict[str, Any]) -> None:
    """`FormulateRetryWorkflow` on the node map `set_nodes` builds (see the module docstring)."""
    nodes: dict[str, dict[str, Any]] = wf["status"]["nodes"]
    by_name = {n["displayName"]: key for key, n in nodes.items()}
    drop = {
        key for key, n in nodes.items() if n.get("type") == "Pod" and n.get("phase") in ("Failed", "Error")
    }
    if body.get("restartSuccessful") and body.get("nodeFieldSelector"):
        field, _, value = body["nodeFieldSelector"].partition("=")
        drop |= {key for key, n in nodes.items() if n.get(field) == value}
    todo = list(drop)
    while todo:  # and every node after a dropped one
        for child in nodes[todo.pop()].get("children", []):
            if by_name.get(child) and by_name[child] not in drop:
                drop.add(by_name[child])
                todo.append(by_name[child])
    on_exit = f"{wf['metadata']['name']}.onExit"
    wf["status"]["nodes"] = {
        key: n for key, n in nodes.items() if key not in drop and not n["name"].startswith(on_exit)
    }
    wf["status"].update({"phase": "", "message": ""})  # WorkflowUnknown, until the controller runs it
    wf["spec"].pop("shutdown", None)
    arguments = wf["spec"].setdefault("arguments", {}).setdefault("parameters", [])
    for item in body.get("parameters") or []:
        name, _, value = item.partition("=")
        arguments[:] = [p for p in arguments if p["name"] != name] + [{"name": name, "value": value}]


class ArgoServerThread:
    def __init__(self, token: str) -> None:
        self.state = FakeArgo(token=token)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.state.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeArgo:
        self._thread.start()
        return self.state

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
