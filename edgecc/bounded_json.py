"""JSON that edgecc reads from a file it did not write itself (an artifact's manifest, a report, a bundle's
model.json): bounded in size and in nesting depth before it is parsed.

A manifest of `[[[[...` 100,000 levels deep ended in RecursionError (and code walking a parsed document
can recurse as deep); a path that is /dev/zero or a FIFO read until memory ran out or hung. Every such
file is one EdgeccError line naming it.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from edgecc.errors import EdgeccError

MAX_DEPTH = 64  # edgecc's own documents nest at most ~8 levels
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def _megabytes(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


def read_bounded_text(path: Path, max_bytes: int, error: type[EdgeccError] = EdgeccError) -> str:
    """The text of a regular file of at most `max_bytes`; never blocks on a FIFO or reads a device."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: opening a FIFO does not wait for a writer
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"{path} is not a regular file")
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise error(f"{path} is larger than {_megabytes(max_bytes)}; refusing to read it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text (byte {exc.start})") from None


def nesting_depth(text: str) -> int:
    """How deep the JSON text's arrays and objects nest (strings are skipped; no parse needed)."""
    depth = deepest = 0
    for bracket in _NOT_BRACKETS.sub("", _STRINGS.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def parse_bounded_json(text: str, source: str, max_depth: int = MAX_DEPTH, error: type[EdgeccError] = EdgeccError):
    """json.loads, after refusing text that nests deeper than `max_depth`."""
    depth = nesting_depth(text)
    if depth > max_depth:
        raise error(f"{source} nests {depth} levels deep (at most {max_depth}); refusing to read it")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{source} is not valid JSON: {exc}") from None
    except RecursionError:  # unreachable after the depth check; kept so a parse never ends in a traceback
        raise error(f"{source} nests too deep to read") from None


def read_bounded_json(path: Path, max_bytes: int, max_depth: int = MAX_DEPTH, error: type[EdgeccError] = EdgeccError):
    """A JSON file of at most `max_bytes` and `max_depth` levels, parsed; else one `error` line naming it."""
    return parse_bounded_json(read_bounded_text(path, max_bytes, error), str(path), max_depth, error)
