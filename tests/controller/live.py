"""A controller serving real HTTP on loopback (uvicorn in a thread), for deliveries from real senders."""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn

from controller.service import ControllerService
from tests.support.net import free_port


class LiveController:
    def __init__(self, service: ControllerService) -> None:
        self.service = service
        self.port = free_port()
        config = uvicorn.Config(
            service.app, host="127.0.0.1", port=self.port, log_config=None, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveController:
        self.thread.start()
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        self.service.start_loop()
        return self

    def __exit__(self, *exc: object) -> None:
        self.service.stop_loop()
        self.server.should_exit = True
        self.thread.join(10)


def wait_for(predicate, timeout_s: float = 30.0, every_s: float = 0.1, what: str = "condition"):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
