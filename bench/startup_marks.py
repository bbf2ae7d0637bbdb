"""Where a server's start-up goes, from its own log marks (issue 27: ready in ≤ 10 s on a GPU).

Every `canaryflow serve` process logs with its wall time (`%(asctime)s [process] LEVEL message`):
the parent when it has chosen the fork server's imports ("fork server imports: ...") and starts its
processes, each process once forked ("forked"), each model once loaded and warmed up ("<uri>: loaded
in X s, warmed up in Y s"). `start_logged` starts the server with its stderr read line by line
(echoed, so a console or a `grep` sees what it saw before) and `timeline` turns the marks into the
breakdown the benchmarks' JSON reports, in seconds from the server's start:

- `cli_s`: the interpreter, the CLI and its imports, the settings and the routing, until the parent
  has chosen the fork server's imports (`preload`: the list, so a reader sees whether transformers
  was among them);
- `fork_server_s`: from the processes' start to the first "forked": the fork server's interpreter
  and its imports (torch, and transformers where a served model needs it);
- per process (`processes`): when it was forked, when its model load began, the load (weights,
  and on a GPU the CUDA context) and the warm-up (graph captures) it reported.
One process (`--workers 1`) has no fork server: only its loads are reported.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from typing import Any

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?:(\S+) )?(?:DEBUG|INFO|WARNING|ERROR) (.*)$")
_LOADED = re.compile(r": loaded in ([0-9.]+) s, warmed up in ([0-9.]+) s$")


def start_logged(cmd: list[str], **popen: Any) -> tuple[subprocess.Popen[str], list[str], float]:
    """The server, the list its stderr lines are appended to, and the wall time it was started."""
    started = time.time()
    server = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, bufsize=1, **popen)
    lines: list[str] = []

    def pump() -> None:
        assert server.stderr is not None
        for line in server.stderr:
            lines.append(line.rstrip("\n"))
            sys.stderr.write(line)

    threading.Thread(target=pump, daemon=True).start()
    return server, lines, started


def _marks(lines: list[str]) -> list[tuple[float, str, str]]:
    """(wall time, process, message) of every log line that carries a time."""
    found = []
    for line in lines:
        match = _LINE.match(line)
        if match:
            when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            found.append((when, match.group(2) or "parent", match.group(3)))
    return found


def timeline(lines: list[str], started: float) -> dict[str, Any]:
    """The breakdown (module docstring) of the marks logged so far, relative to `started`."""
    out: dict[str, Any] = {"cli_s": None, "preload": None, "fork_server_s": None, "processes": {}}
    starting = None
    for when, process, message in _marks(lines):
        at = round(when - started, 3)
        if process == "parent" and message.startswith("fork server imports: "):
            out["cli_s"] = at
            out["preload"] = message.removeprefix("fork server imports: ").split(", ")
        elif process == "parent" and message.startswith("serving mode") and out["cli_s"] is None:
            out["cli_s"] = at  # a server from before the preload mark: its next mark
        elif process == "parent" and message.startswith("starting ") and "fork server" in message:
            starting = at
        elif message == "forked":
            out["processes"].setdefault(process, {})["forked_at_s"] = at
            if starting is not None and out["fork_server_s"] is None:
                out["fork_server_s"] = round(at - starting, 3)
        elif loaded := _LOADED.search(message):
            load_s, warm_s = float(loaded.group(1)), float(loaded.group(2))
            entry = out["processes"].setdefault(process, {})
            load = {"load_began_at_s": round(at - load_s - warm_s, 3), "load_s": load_s, "warm_up_s": warm_s}
            entry.setdefault("loads", []).append({**load, "warm_at_s": at})
    return out


def summary(marks: dict[str, Any]) -> str:
    """One line for the console: the parts of the start-up, the slowest process's."""
    loads = [load for entry in marks["processes"].values() for load in entry.get("loads", [])]
    parts = [f"CLI {marks['cli_s']} s" if marks["cli_s"] is not None else "CLI -"]
    if marks["fork_server_s"] is not None:
        parts.append(f"fork server imports {marks['fork_server_s']} s")
    if loads:
        last = max(loads, key=lambda load: load["warm_at_s"])
        parts.append(f"last model began loading at {last['load_began_at_s']} s, load {last['load_s']} s, "
                     f"warm-up {last['warm_up_s']} s, warm at {last['warm_at_s']} s")  # fmt: skip
    if marks["preload"] is not None:
        preloaded = any(module.startswith("transformers") for module in marks["preload"])
        parts.append("transformers preloaded" if preloaded else "no transformers preloaded")
    return "; ".join(parts)
