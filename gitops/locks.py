"""Lock files a killed git leaves in the working clone, and when it is safe to remove them.

git takes `.git/index.lock` (and `HEAD.lock`, `refs/.../*.lock`, `config.lock`, `packed-refs.lock`)
with O_EXCL and removes it when done; a git killed with its parent (SIGKILL, OOM, node loss) leaves
it behind, and every later git command on the clone then fails with "Another git process seems to be
running". canaryflow holds its own lock on the clone (`GitRepo._exclusive`, an flock the kernel drops
when the holder dies), so under that lock the only other possible owner is a git process still alive
from before (an orphan of a killed parent). A lock file is stale, and removed, when no git process
works in the clone (Linux: /proc/<pid>/cwd); where /proc cannot tell, when it is older than the
longest a git command may run.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

_FIXED = ("index.lock", "HEAD.lock", "config.lock", "packed-refs.lock", "shallow.lock", "ORIG_HEAD.lock")


class CloneBusy(RuntimeError):
    """A live git process works in the clone: its locks are not stale; try again later."""


def lock_files(git_dir: Path) -> list[Path]:
    found = [git_dir / name for name in _FIXED if (git_dir / name).exists()]
    refs = git_dir / "refs"
    if refs.is_dir():
        found += sorted(refs.rglob("*.lock"))
    return found


def git_processes_in(workdir: Path) -> list[int] | None:
    """Pids of git processes whose working directory is `workdir`; None where /proc cannot tell."""
    proc = Path("/proc")
    if not (proc / "self" / "cwd").exists():
        return None
    target = os.path.realpath(workdir)
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.path.realpath(entry / "cwd") != target:
                continue
            name = (entry / "comm").read_text().strip()
        except OSError:  # gone meanwhile, or another user's process: not ours
            continue
        if name == "git" or name.startswith("git-"):
            pids.append(int(entry.name))
    return pids


def clear_stale_locks(workdir: Path, max_age_s: float) -> list[str]:
    """Removes the lock files no live git process owns; returns their names (relative to .git).

    Raises CloneBusy when a git process still works in the clone: its lock is real, and removing it
    would let two gits write the index at once."""
    git_dir = workdir / ".git"
    locks = lock_files(git_dir)
    if not locks:
        return []
    live = git_processes_in(workdir)
    if live:
        names = ", ".join(str(p.relative_to(git_dir)) for p in locks)
        raise CloneBusy(f"git process {', '.join(map(str, live))} still works in {workdir} (holding {names})")
    removed = []
    now = time.time()
    for lock in locks:
        try:
            age = now - lock.stat().st_mtime
        except FileNotFoundError:
            continue
        if live is None and age < max_age_s:
            raise CloneBusy(f"{lock} is {age:.0f} s old and no process table to tell its owner is gone")
        lock.unlink(missing_ok=True)
        removed.append(str(lock.relative_to(git_dir)))
    log.warning("removed stale git lock(s) left by a killed git in %s: %s", workdir, ", ".join(removed))
    return removed
