"""`canaryflow serve --workers N`: the real multi-process server, in both modes, on CPU.

Each mode starts as a user would start it (a subprocess of the CLI), takes requests on fresh
connections (the kernel spreads them over the processes sharing the port), answers with the model's
embeddings, reports metrics merged over all its processes, and stops on SIGTERM leaving no process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from canaryflow.adapters.model_assets import minilm_path
from tests.inference.conftest import SENTENCES
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]


def _requests_total(metrics_text: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("canaryflow_requests_total{") and 'code="200"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 240) -> None:
    """Ready on many fresh connections in a row: every process has loaded the model."""
    deadline = time.monotonic() + timeout_s
    streak = 0
    while streak < 20:
        assert proc.poll() is None, f"server exited with {proc.returncode}"
        assert time.monotonic() < deadline, "server processes not ready in time"
        try:
            streak = streak + 1 if httpx.get(f"{url}/ready", timeout=5).status_code == 200 else 0
        except httpx.TransportError:
            streak = 0
        if streak == 0:
            time.sleep(0.3)


@pytest.mark.timeout(420)
@pytest.mark.parametrize("mode", ["--replicas", "--engine"])
def test_workers_serve_and_merge_metrics(mode: str, st_model) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "canaryflow.app.cli", "serve", "--model-uri", str(minilm_path()),
               "--model-name", "minilm", "--workers", "2", "--port", str(port), "--device", "cpu",
               mode]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CANARYFLOW_INFERENCE_MAX_WAIT_MS": "2"}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    try:
        _wait_ready(url, proc)
        want = st_model.encode(SENTENCES[:2])
        for _ in range(12):  # a fresh connection each time
            response = httpx.post(
                f"{url}/v1/embeddings", json={"input": SENTENCES[:2], "model": "minilm"}, timeout=60
            )
            assert response.status_code == 200, response.text
            assert response.headers["X-Model-Version"] == "1"
            got = np.array([d["embedding"] for d in response.json()["data"]])
            np.testing.assert_allclose(got, want, atol=1e-5)
        # Whichever process answers /metrics reports every process's requests.
        for _ in range(6):
            assert _requests_total(httpx.get(f"{url}/metrics", timeout=10).text) == 12
        # Stopped under load, the requests it had taken are still answered (in the engine mode the
        # fronts drain before the engine stops); new connections are refused.
        answers = _stop_under_load(url, proc)
        assert answers["after_signal"], "no request was in flight when the server was stopped"
        assert set(answers["codes"]) == {200}, answers["errors"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode is not None
    # multiprocessing's resource tracker leaves on its own once the server has gone: give it a moment.
    deadline = time.monotonic() + 10
    while _session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {pid: _cmdline(pid) for pid in _session_members(proc.pid)}
    assert not left, f"server processes left behind: {left}"


def _stop_under_load(url: str, proc: subprocess.Popen[bytes]) -> dict[str, list[Any]]:
    """SIGTERM while four clients keep 64-sentence requests going; each answer's code, and those
    that arrived after the signal."""
    codes: list[int] = []
    after: list[int] = []
    signalled: list[float] = []
    errors: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=60) as session:
            while not stop.is_set():
                try:
                    response = session.post(
                        f"{url}/v1/embeddings", json={"input": SENTENCES * 8, "model": "minilm"}
                    )
                except httpx.TransportError:  # refused or closed once the server stops
                    return
                codes.append(response.status_code)
                if response.status_code != 200:
                    errors.append(response.text[:300])
                if signalled:
                    after.append(response.status_code)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    while len(codes) < 8 and proc.poll() is None:
        time.sleep(0.05)
    signalled.append(time.monotonic())
    proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=60)
    stop.set()
    return {"codes": codes, "after_signal": after, "errors": errors}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


def _session_members(session: int) -> list[int]:
    """Live processes of a session (Linux /proc): what a stopped server must not leave behind."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members
