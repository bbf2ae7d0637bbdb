"""The one entry point lists every group of the design and each answers --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GROUPS = ["demo", "controller", "serve", "analyze", "workflow", "gitops", "install"]
CLI = str(Path(sys.executable).with_name("canaryflow"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_group() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for group in GROUPS:
        assert group in result.stdout


@pytest.mark.parametrize("group", GROUPS)
def test_each_group_answers_help(group: str) -> None:
    result = run(group, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_unknown_command_is_bad_usage() -> None:
    result = run("no-such-command")
    assert result.returncode == 2
