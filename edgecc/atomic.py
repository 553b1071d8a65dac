"""The one way edgecc writes files and folders: a reader never sees a half-written one, and a failed
write leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from edgecc.errors import EdgeccError


@contextmanager
def atomic_output_file(path: Path, mode: int = 0o644):
    """Yield a temporary path beside `path`; when the block succeeds it replaces `path` (fsynced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # mkstemp's 0600 would hide reports from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    with atomic_output_file(path, mode) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_npz_atomic(path: Path, arrays: dict) -> None:
    import numpy as np

    try:
        with atomic_output_file(path) as tmp:
            with open(tmp, "wb") as handle:  # a file object: np.savez would append .npz to a name
                np.savez(handle, **arrays)
    except OSError as exc:
        raise EdgeccError(f"cannot write {path}: {exc.strerror}") from None


@contextmanager
def staged_directory(final: Path):
    """Yield a fresh sibling folder; on success it replaces `final`, on failure it vanishes."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-", dir=final.parent))
    os.chmod(stage, 0o755)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(stage, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
