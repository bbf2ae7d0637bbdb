"""A GitOps remote on disk: a bare repository with one initial commit on `main`."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path


def _git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env={"GIT_TERMINAL_PROMPT": "0", "HOME": str(Path.home()), "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    return result.stdout


def init_bare_remote(path: Path, branch: str = "main") -> Path:
    """Create `path` as a bare repo whose `branch` holds a README, so clones have a head to build on."""
    path.mkdir(parents=True, exist_ok=True)
    _git("init", "--bare", f"--initial-branch={branch}", str(path))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "seed"
        _git("init", f"--initial-branch={branch}", str(work))
        (work / "README.md").write_text("# GitOps repository managed by canaryflow\n")
        _git("add", "README.md", cwd=work)
        _git(
            "-c",
            "user.name=canaryflow",
            "-c",
            "user.email=canaryflow@localhost",
            "commit",
            "-m",
            "Initialise GitOps repository",
            cwd=work,
        )
        _git("push", str(path), f"{branch}:{branch}", cwd=work)
    return path
