"""The demo's stand-in for a chat channel and an event consumer: one local HTTP endpoint that takes
apprise's generic JSON webhook (`POST /chat`) and CloudEvents (`POST /events`), keeps each one in
`notifications.jsonl`, and hands the chat message's title to a callback (the demo prints it)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cloudevents.core.bindings.http import HTTPMessage, from_http_event

CHAT_PATH, EVENTS_PATH = "/chat", "/events"


class NotificationReceiver:
    def __init__(self, log_path: Path, on_message: Callable[[str], None]) -> None:
        self.log_path, self.on_message = log_path, on_message
        self.chat: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.2,), name="notify-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def settings_env(self) -> dict[str, str]:
        """The controller's notification settings pointing here (both channel kinds)."""
        host = self.url.removeprefix("http://")
        return {
            "CANARYFLOW_NOTIFY_URLS": f"json://{host}{CHAT_PATH}",
            "CANARYFLOW_NOTIFY_CLOUDEVENTS_URL": f"{self.url}{EVENTS_PATH}",
            "CANARYFLOW_NOTIFY_BACKOFF_S": "0.2",
        }

    def start(self) -> NotificationReceiver:
        self._thread.start()
        return self

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        if path == CHAT_PATH:
            message = json.loads(body)
            entry = {"channel": "chat", "title": message.get("title", ""), "message": message.get("message")}
            with self._lock:
                self.chat.append(entry)
            self.on_message(str(entry["title"]))
        elif path == EVENTS_PATH:
            event = from_http_event(HTTPMessage(headers=headers, body=body))
            entry = {"channel": "cloudevents", "type": event.get_type(), "data": event.get_data()}
            with self._lock:
                self.events.append(entry)
        else:
            return 404
        with self._lock, self.log_path.open("a") as log:
            log.write(json.dumps(entry) + "\n")
        return 200

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    status = receiver._record(self.path, headers, body)
                except (ValueError, KeyError) as exc:  # a body that is not what the path expects
                    self.send_error(400, str(exc)[:200])
                    return
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
