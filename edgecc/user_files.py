"""Files the user names (a target's board file, --inputs, --calibration, the model): checked before
anything reads them. `--target /dev/zero` read until memory ran out, and a FIFO blocks its reader
forever; each is one clear line instead, as is a file far larger than any of its kind."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

from edgecc.errors import EdgeccError

MiB = 1 << 20


def _size(count: int) -> str:
    return f"{count / MiB:,.0f} MiB" if count >= MiB else f"{count:,} bytes"


def checked_user_file(path, what: str, max_bytes: int, error: type[EdgeccError] = EdgeccError) -> Path:
    """`path`, after refusing anything but a regular file (symlinks followed) of at most `max_bytes`."""
    path = Path(path)
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    if stat.S_ISDIR(status.st_mode):
        raise error(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(status.st_mode):
        raise error(f"{what} {path} is not a regular file (a device, FIFO or socket); refusing to read it")
    if status.st_size > max_bytes:
        raise error(f"{what} {path} is {_size(status.st_size)}, larger than {_size(max_bytes)}; refusing to read it")
    return path


def checked_npz(path, what: str, max_bytes: int, error: type[EdgeccError] = EdgeccError) -> Path:
    """An .npz the user names: a regular file whose arrays, unpacked, fit in `max_bytes` (a few KB of
    compressed zeros can unpack to gigabytes)."""
    path = checked_user_file(path, what, max_bytes, error)
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        return path  # not a zip (a plain .npy, or garbage): np.load says what it is
    if unpacked > max_bytes:
        raise error(f"{what} {path} unpacks to {_size(unpacked)}, larger than {_size(max_bytes)}; refusing to read it")
    return path
