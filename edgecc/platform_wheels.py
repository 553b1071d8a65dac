"""Binary wheels for another machine (an aarch64 board's TVM runtime, a bundle's libraries): pip
downloads them for that platform's tags without installing anything here."""

from __future__ import annotations

import sys
from pathlib import Path


def pip_download_command(destination: Path, platforms: list[str], python_version: str = "3.11") -> list[str]:
    """`pip download` of CPython `python_version` binary wheels for `platforms` into `destination`;
    append the requirements."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", python_version, "--implementation", "cp", "-d", str(destination)]
    for tag in platforms:
        cmd += ["--platform", tag]
    return cmd
