"""The folder a compile writes its artifact into: checked before any work is done."""

from __future__ import annotations

import os
from pathlib import Path

from edgecc.errors import EdgeccError


def check_output_folder(output: Path) -> None:
    """Fail before any work when the artifact folder cannot be written where it was asked for."""
    if output.exists() and not output.is_dir():
        raise EdgeccError(f"cannot write the output folder {output}: a file of that name exists")
    probe = output.parent if str(output.parent) else Path(".")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise EdgeccError(f"cannot write the output folder {output}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK):
        raise EdgeccError(f"cannot write the output folder {output}: {probe} is not writable")
