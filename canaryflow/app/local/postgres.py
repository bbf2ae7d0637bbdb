"""A real PostgreSQL server (Debian package `postgresql`) in a temporary directory, on loopback.

For the tests and benchmarks of the controller's shared state (several replicas on one database). The
cluster is made with `initdb` (trust authentication on 127.0.0.1, one database `canaryflow`) and the
server runs in the foreground as a managed process; `stop()` asks for PostgreSQL's fast shutdown.
PostgreSQL refuses to run as root: as root, the binaries run as the `postgres` user Debian's package
creates (through `setpriv`), in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from canaryflow.app.local.process import ManagedProcess, ProcessStartError, free_port

INSTALL_HINT = (
    "install it with: apt-get install -y postgresql (Debian/Ubuntu, as root), or `make debian-tools`"
)
_USER = "canaryflow"


class PostgresNotInstalled(RuntimeError):
    pass


def postgres_bindir() -> Path | None:
    """Where `initdb` and `postgres` are: on PATH, else Debian's /usr/lib/postgresql/<major>/bin (newest)."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    for bindir in sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    ):
        if Path(bindir, "initdb").exists() and Path(bindir, "postgres").exists():
            return Path(bindir)
    return None


@dataclass
class PostgresServer:
    process: ManagedProcess
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"postgresql://{_USER}@127.0.0.1:{self.port}/canaryflow"

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions are ended, no wait for clients), then the directory goes."""
        if self.process.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.proc.wait(timeout=15)
        self.process.stop(grace=5)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _as_postgres_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]


def start_postgres(port: int | None = None, timeout: float = 60.0) -> PostgresServer:
    """A fresh cluster in a new temporary directory (outside pytest's root-only tree, so that the
    `postgres` user can reach it), served on 127.0.0.1:`port`."""
    bindir = postgres_bindir()
    if bindir is None:
        raise PostgresNotInstalled(f"PostgreSQL is not installed; {INSTALL_HINT}")
    workdir = Path(tempfile.mkdtemp(prefix="canaryflow-pg-"))
    data = workdir / "data"
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(workdir, entry.pw_uid, entry.pw_gid)
    init = subprocess.run(
        _as_postgres_user(
            [str(bindir / "initdb"), "-D", str(data), "-U", _USER, "--auth=trust", "-E", "UTF8", "--no-sync"]
        ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if init.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        raise ProcessStartError(f"initdb failed ({init.returncode}): {init.stderr.strip()[-2000:]}")
    port = port or free_port()
    argv = _as_postgres_user(
        [
            str(bindir / "postgres"),
            "-D", str(data),
            "-p", str(port),
            "-k", str(workdir),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]
    )  # fmt: skip
    proc = ManagedProcess("postgres", argv, workdir / "postgres.log")
    server = PostgresServer(process=proc, port=port, workdir=workdir)
    try:
        proc.wait_until(lambda: _accepts(bindir, port), timeout, "accepting connections")
        created = subprocess.run(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", _USER, "canaryflow"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if created.returncode != 0:
            raise ProcessStartError(f"createdb failed: {created.stderr.strip()}")
    except BaseException:
        server.stop()
        raise
    return server


def _accepts(bindir: Path, port: int) -> bool:
    ready = bindir / "pg_isready"
    if not ready.exists():
        return False
    answer = subprocess.run(
        [str(ready), "-h", "127.0.0.1", "-p", str(port), "-q"], capture_output=True, timeout=10
    )
    return answer.returncode == 0
