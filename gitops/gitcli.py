"""The `git` command line, with credentials passed through the environment and scrubbed from errors.

A token never goes into a remote URL (which git prints and stores in .git/config): it travels as an
`http.extraHeader` set through GIT_CONFIG_* variables of the child process only. An SSH key is named
in GIT_SSH_COMMAND. Every message that leaves this module has the secrets replaced by `***`.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

# What git prints when a push lost a race against another writer of the same branch.
_RACE = re.compile(
    r"\[rejected\]|non-fast-forward|fetch first|cannot lock ref|failed to update ref|"
    r"\[remote rejected\].*(?:lock|failed to update)|incorrect old value"
)


# A remote that hangs (a dead host, a prompt nobody answers) fails the step instead of blocking it.
GIT_TIMEOUT_S = 120.0
# A transfer slower than 1 kB/s for 30 s is a dead connection, not a slow one (http.lowSpeed*).
_TRANSFER_LIMITS = ("-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=30")

# What git prints, mapped to the cause an operator acts on (never git's own guess about an editor).
_LOCK = re.compile(r"Unable to create '([^']+\.lock)': File exists")
_UNREACHABLE = re.compile(
    r"Could not resolve host|Connection refused|Connection timed out|Operation timed out|"
    r"Could not read from remote repository|unable to access|does not appear to be a git repository|"
    r"Network is unreachable|Failed to connect|The remote end hung up unexpectedly|Empty reply from server"
)
_AUTH = re.compile(
    r"Authentication failed|Permission denied \(publickey|could not read Username|"
    r"The requested URL returned error: 40[13]|Host key verification failed"
)
_DISK = re.compile(r"No space left on device|Disk quota exceeded")


class GitError(RuntimeError):
    """A git command failed; the message carries its (scrubbed) output and the cause it maps to."""

    cause = "git failed"


class PushRejected(GitError):
    """The remote branch moved since the last fetch: retry on top of the new head."""

    cause = "the remote branch moved"


class GitLockHeld(GitError):
    """A git lock file in the working clone is held (by a live git, or left by a killed one)."""

    cause = "a git lock file is held"


class RemoteUnreachable(GitError):
    """The git remote did not answer (DNS, connection, timeout, missing repository)."""

    cause = "the git remote is unreachable"


class RemoteAuthFailed(GitError):
    """The git remote refused the credentials (token, SSH key, host key)."""

    cause = "the git remote refused the credentials"


class DiskFull(GitError):
    """The working clone's disk is full."""

    cause = "the disk of the working clone is full"


@dataclass(frozen=True)
class GitAuth:
    token: str | None = None
    username: str = "x-access-token"
    ssh_key_path: Path | None = None

    def _basic(self) -> str | None:
        if not self.token:
            return None
        return base64.b64encode(f"{self.username}:{self.token}".encode()).decode()

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        basic = self._basic()
        if basic:
            index = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
            env[f"GIT_CONFIG_KEY_{index}"] = "http.extraHeader"
            env[f"GIT_CONFIG_VALUE_{index}"] = f"Authorization: Basic {basic}"
            env["GIT_CONFIG_COUNT"] = str(index + 1)
        if self.ssh_key_path is not None:
            env["GIT_SSH_COMMAND"] = (
                f"ssh -i {shlex.quote(str(self.ssh_key_path))} -o IdentitiesOnly=yes -o BatchMode=yes"
            )
        return env

    def scrub(self, text: str) -> str:
        for secret in (self.token, self._basic()):
            if secret:
                text = text.replace(secret, "***")
        # Credentials a user put into a URL themselves (https://user:pass@host) are hidden too.
        return re.sub(r"(https?://)[^/@\s]+@", r"\1***@", text)


class Git:
    """Runs git in one working clone as one author."""

    def __init__(self, workdir: Path, auth: GitAuth, author_name: str, author_email: str) -> None:
        self.workdir = workdir
        self.auth = auth
        self._env = {
            **os.environ,
            **auth.env(),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": author_name,
            "GIT_AUTHOR_EMAIL": author_email,
            "GIT_COMMITTER_NAME": author_name,
            "GIT_COMMITTER_EMAIL": author_email,
            "LC_ALL": "C",
        }

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(
                ["git", "-c", "commit.gpgsign=false", *_TRANSFER_LIMITS, *args],
                cwd=self.workdir,
                env=self._env,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RemoteUnreachable(f"git {args[0]}: no answer within {GIT_TIMEOUT_S:.0f}s") from None
        if check and proc.returncode != 0:
            raise self.error(args, proc)
        return proc

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.strip()

    def error(self, args: tuple[str, ...], proc: subprocess.CompletedProcess[str]) -> GitError:
        """The failure as the cause it maps to, with git's own fatal/error lines (not its advice)."""
        output = f"{proc.stdout}\n{proc.stderr}"
        lock = _LOCK.search(output)
        if lock:
            return GitLockHeld(
                self.auth.scrub(
                    f"git {args[0]}: {lock.group(1)} exists: a git process is still running in the clone "
                    "or was killed while holding it (removed once no git process works in the clone)"
                )
            )
        detail = [
            line
            for line in output.splitlines()
            if line.strip() and not line.startswith("hint:") and "editor" not in line
        ]
        text = " | ".join(detail[-4:])
        kind: type[GitError] = GitError
        if args[0] == "push" and _RACE.search(output):
            kind = PushRejected
        elif _DISK.search(output):
            kind = DiskFull
        elif _AUTH.search(output):
            kind = RemoteAuthFailed
        elif _UNREACHABLE.search(output):
            kind = RemoteUnreachable
        prefix = f"{kind.cause}: " if kind is not GitError else ""
        return kind(self.auth.scrub(f"git {args[0]}: {prefix}{text}"))
