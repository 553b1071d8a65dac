"""Binary wheels for another machine (an aarch64 board's TVM runtime, a bundle's libraries): pip
downloads them for that platform's tags without installing anything here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edgecc.errors import ToolchainError


def pip_download_command(destination: Path, platforms: list[str], python_version: str = "3.11") -> list[str]:
    """`pip download` of CPython `python_version` binary wheels for `platforms` into `destination`;
    append the requirements."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", python_version, "--implementation", "cp", "-d", str(destination)]
    for tag in platforms:
        cmd += ["--platform", tag]
    return cmd


def download_wheels(destination: Path, platforms: list[str], requirements: list[str], what: str) -> None:
    """`pip download` `requirements` for `platforms` into `destination`; a failure is one line naming
    `what` was being downloaded and pip's last word."""
    proc = subprocess.run(
        pip_download_command(destination, platforms) + list(requirements), capture_output=True, text=True
    )
    if proc.returncode != 0:
        said = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ToolchainError(f"could not download {what}: pip said: {said}")
