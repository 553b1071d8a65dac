"""The one way edgecc writes files and folders: a reader never sees a half-written one, and a failed
write leaves nothing behind."""

from __future__ import annotations

import glob
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from edgecc.errors import EdgeccError
from edgecc.interrupts import deferred


@contextmanager
def atomic_output_file(path: Path, mode: int = 0o644, *, prefix: str | None = None, suffix: str | None = None):
    """Yield a temporary path beside `path`; when the block succeeds it replaces `path` (fsynced).
    The temporary file is hidden: `.NAME.XXXXXXXX.SUFFIX` (`prefix` and `suffix` can name it
    otherwise, e.g. so that a kill -9 leaves nothing a folder scan takes for the real file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}." if prefix is None else prefix,
        suffix=path.suffix if suffix is None else suffix,
        dir=path.parent,
    )
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # mkstemp's 0600 would hide reports from other users
        os.replace(tmp, path)
    except BaseException:
        with deferred():
            Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, mode: int = 0o644, **temporary) -> None:
    with atomic_output_file(path, mode, **temporary) as tmp:
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
    """Yield a fresh sibling folder; on success it replaces `final`, on failure it vanishes.

    The sibling is `.NAME.staging-PID-XXXX` (and the replaced folder `.NAME.old-PID` for a moment),
    so leftovers of a killed run (kill -9, power loss) name a process that no longer runs: the next
    compile into the same place removes them first. Signals are turned into exceptions by the CLI
    (edgecc/interrupts.py), so SIGINT/SIGTERM/SIGHUP take the failure path below as well, and a
    repeated one is held back until that cleanup is done."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(final)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-{os.getpid()}-", dir=final.parent))
    old = None
    try:
        os.chmod(stage, 0o755)
        yield stage
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
            os.replace(final, old)
        os.replace(stage, final)
    except BaseException:
        with deferred():  # a repeated signal must not leave half a staging folder or lose the earlier one
            shutil.rmtree(stage, ignore_errors=True)
            if old is not None and old.exists() and not final.exists():
                os.replace(old, final)  # the swap failed half way: put the earlier folder back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?:staging|old)-(?:(?P<pid>\d+)-)?(?P<tag>[^-]*)")
LEGACY_STALE_S = 3600  # leftovers of edgecc versions that did not put the pid in the name


def remove_stale_siblings(final: Path) -> list[Path]:
    """Remove `.NAME.staging-PID-*` / `.NAME.old-PID` folders beside `final` whose process is gone."""
    final = Path(final)
    removed = []
    try:
        siblings = list(final.parent.glob(f".{glob.escape(final.name)}.*-*"))
    except OSError:
        return removed
    for path in siblings:
        match = _LEFTOVER.fullmatch(path.name)
        if not match or match["name"] != final.name or not path.is_dir() or path.is_symlink():
            continue
        if match["pid"] is None and match["tag"].isdigit():
            alive = process_alive(int(match["tag"]))  # `.NAME.old-PID` of earlier versions
        elif match["pid"] is None:
            alive = time.time() - path.stat().st_mtime < LEGACY_STALE_S
        else:
            alive = process_alive(int(match["pid"]))
        if alive:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True
